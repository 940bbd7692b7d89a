#pragma once
// `ocellus train --recipe FILE`: one loop for every objective. An Objective is a model, its data
// and a loss (next-token cross-entropy for a VLM or a text model; SigLIP's sigmoid pair loss for
// a vision tower); the Trainer owns the rest: parameter groups and AdamW, the sample order, the
// step loop with gradient accumulation and MPI data parallelism, the metrics log, checkpoints
// written atomically with a retention count, and exact resume (the same losses as an unbroken
// run). run_recipe picks the recipe's objective, trains, draws the loss curve and exports.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "ocellus/autograd/autograd.h"
#include "ocellus/io/image.h"
#include "ocellus/train/optim.h"
#include "ocellus/train/recipe.h"

namespace ocellus::train {

struct StepStats {
  int64_t step = 0, steps = 0, tokens = 0;
  int64_t first_step = 0;  // where this run started (a resumed run: its checkpoint's step)
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0, elapsed_s = 0;
};

struct TrainResult {
  std::vector<double> losses;  // of the steps run by this call
  int64_t first_step = 0;      // 0, or where a resumed run started
  std::string model_dir;       // the exported model (Hugging Face LLaVA folder)
  std::string gguf_model, gguf_mmproj;  // the same as a GGUF pair (next-token objective)
};

// How a run meets its `out` folder. Fresh refuses a folder that already holds a run (metrics,
// checkpoints or an exported model); Overwrite first removes what a run writes there; Resume
// continues from the latest checkpoint (one past the recipe's steps is refused; one at them only
// exports).
enum class Start { Fresh, Resume, Overwrite };

// Checked before any work: the errors above, naming the folder. Returns the step a run starts at.
int64_t prepare_out_folder(const Recipe& r, Start start);

// The run's metrics log: one JSON line per step.
inline std::string metrics_path(const Recipe& r) { return r.out + "/metrics.jsonl"; }
// The metrics log's lines (text and parsed), a line cut short by a kill left out.
std::vector<std::pair<std::string, nlohmann::json>> read_metrics_log(const std::string& path);

// What the Trainer trains: a model, its samples, and the loss over a few of them.
class Objective {
 public:
  virtual ~Objective() = default;
  // Every parameter, under the name checkpoints hold it by; requires_grad marks those that train.
  virtual const std::vector<ag::Var>& params() const = 0;
  // Samples the batches are drawn from.
  virtual size_t size() const = 0;
  // Tokens sample i puts through the model (throughput; the micro-batch budget).
  virtual int64_t tokens(size_t i) const = 0;
  // Sample i's weight in the batch's loss, a weighted mean (next-token: the tokens in its loss).
  virtual int64_t weight(size_t) const { return 1; }
  // Whether a batch's loss is the weighted mean of per-sample terms, so that it may be split into
  // micro-batches and across processes (SigLIP's pairs every image with every caption: no).
  virtual bool separable() const { return true; }
  // The loss of these samples (their weighted mean), a scalar [1], at a step (0-based) of the
  // run: what a loss draws at random (a diffusion loss's noise) comes from it and the samples,
  // so that a resumed run draws the same.
  virtual ag::Var loss(int64_t step, const std::vector<size_t>& samples) = 0;
  // What a step's metrics line adds, read after the optimizer step; batch_weight: the weight of
  // the whole (global) batch.
  virtual void log_fields(nlohmann::json& line, int64_t batch_weight) const = 0;
  // Writes the trained model into out (by the first process, after the last step) and names
  // what it wrote in res.
  virtual void export_model(const std::string& out, TrainResult& res) const = 0;
};

// What a run left out (an objective's records: malformed, or a missing or broken image): the
// first five and a count ("<who>: skipped N <what>"), on stderr by the first process.
void report_skipped(const std::vector<std::string>& skipped, const char* who = "train",
                    const char* what = "record(s) (malformed, or a missing or broken image)");
// Each image of paths decoded once, in order, and handed to use(i, image); one that is missing
// or broken, or that use refuses (an Error), is skipped with its message added to skipped when
// the recipe skips bad records, else its error is thrown. A progress line ("<who>: images
// i/n") counts them.
void for_each_image(const Recipe& r, const std::vector<std::string>& paths, const char* who, std::vector<std::string>& skipped,
                    const std::function<void(size_t, const io::ImageRgb8&)>& use);

class Trainer {
 public:
  // The objective's trainable parameters in the recipe's groups (the first prefix that matches;
  // the others at the recipe's lr and weight decay) under AdamW.
  Trainer(const Recipe& r, Objective& objective);
  // Prepares out (prepare_out_folder), resumes from its latest checkpoint when asked, and runs
  // the steps up to the recipe's: a metrics line per step, checkpoints every checkpoint_every
  // steps and at the last. stop_after > 0 ends it after that many steps of this call (as if
  // killed after its checkpoint). Exports nothing.
  TrainResult run(Start start, const std::function<void(const StepStats&)>& on_step = {}, int64_t stop_after = 0);

 private:
  const Recipe& r_;
  Objective& obj_;
  AdamW opt_;
  std::vector<ag::Var> trainable_;  // the groups' parameters, in group order
};

// The objectives a recipe names, their model loaded and their data read and checked (every error
// names the record). r must outlive them.
// "next_token" (the default; train/next_token.cpp): the recipe's base LLaVA folder (or text model)
// trained with cross-entropy on the tokens of LLaVA JSON conversations that its "loss" names (the
// assistant's replies by default). Images come as tower features from the feature cache (a record
// whose image is not cached is an error); which parts train is the recipe's ("trainable",
// "tower_from", "lora"). Exports out/model (the base folder with the trained tensors, adapters
// merged) and out/gguf/{model,mmproj}.gguf.
std::unique_ptr<Objective> next_token_objective(const Recipe& r);
// "siglip" (train/siglip.cpp): captions of the data (the assistant's text of each record) paired
// with its images, one batch in one pass in one process; exports out/model (the base folder with
// the trained tower) and out/siglip.safetensors (text tower and heads).
std::unique_ptr<Objective> siglip_objective(const Recipe& r);
// "vae" (train/image_objectives.cpp): a new VAE (gen/vae.h; the recipe's "model" is its config)
// on the images of the data's records, reconstruction MSE plus kl_weight times the KL; exports
// out/model (config.json with the latents' scaling_factor, model.safetensors).
std::unique_ptr<Objective> vae_objective(const Recipe& r);
// "classifier": a new CNN (vision/cnn_classifier.h) on the photos of an IDX image file ('data')
// and their 'labels', cross-entropy; exports out/model.
std::unique_ptr<Objective> classifier_objective(const Recipe& r);
// "fusion" (train/fusion_objective.cpp): LlamaFusion (gen/fusion_model.h) on the base GGUF text
// model and the VAE folder 'vae', over the captioned images of the data: each record drawn as
// generation (caption, then the image diffused at a random timestep; the caption dropped for
// cfg_dropout of them) or, for the fraction 'understanding' of draws, as understanding (the
// clean image, then its caption); loss
// cross-entropy + image_loss_weight · noise MSE; 'trainable' ["image."] keeps the text frozen.
// The recipe's "model" is the fusion config (U-Net sizes, modality_specific). Exports out/model.
std::unique_ptr<Objective> fusion_objective(const Recipe& r);

// The loss curve of a run as a PNG (train/plot.cpp): a line chart (640 x 320) of the losses its
// metrics log holds, in order, drawn from the log so that a resumed run's curve covers the whole
// run; nothing is written for none.
void draw_loss_curve(const std::string& metrics_path, const std::string& png_path);

// Runs the recipe: its objective trained, then (when the run reached the recipe's steps) the
// loss curve drawn as out/loss.png and the model exported. stop_after: as Trainer::run.
TrainResult run_recipe(const Recipe& r, Start start, const std::function<void(const StepStats&)>& on_step = {},
                       int64_t stop_after = 0);

}  // namespace ocellus::train
