#pragma once
// `ocellus train --recipe FILE`: one stage of the two-stage recipe (connector pretraining on
// captions, or instruction fine-tuning) as a readable JSON recipe. The vision tower is frozen
// and read through the embedding cache; which other parts train, with which learning rates,
// is the recipe's. Checkpoints are written atomically with a retention count and resume exactly
// (the same losses as an unbroken run); metrics go to a JSON-lines log; at the end the loss
// curve is drawn as a PNG and the model is exported as a Hugging Face LLaVA folder and as a
// GGUF pair (text model + mmproj, llama.cpp's layout), both of which `ocellus run` loads.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ocellus/core/tensor.h"
#include "ocellus/data/llava_json.h"

namespace ocellus::train {

struct RecipeGroup {
  std::string prefix;  // parameters whose names start with it
  double lr = 0, weight_decay = 0;
};

// The text tower and heads of SigLIP pretraining ("objective": "siglip").
struct SiglipOptions {
  int64_t text_embd = 128, text_ff = 512, text_layers = 2, text_heads = 2;
  int64_t embed_dim = 128;     // the shared space both towers are projected into
  int64_t max_text_len = 64;   // caption tokens kept
};

struct Recipe {
  std::string path;                 // the recipe file (relative paths are relative to its folder)
  std::string objective = "next_token";  // or "siglip": contrastive pretraining of the tower
  SiglipOptions siglip;
  std::string base;                 // Hugging Face LLaVA folder: initial weights, config, tokenizer
  std::string data, images;         // LLaVA JSON and its image folder
  std::string cache;                // feature cache of the (frozen) tower over the images (text-only data: none)
  std::string chat_template;        // by name; empty: from the base folder
  bool ignore_images = false;       // train on the records' text alone (language-model pretraining)
  int64_t min_turns = 1;            // records with fewer assistant replies are left out
  bool loss_on_all = false;         // "loss": "all": every token predicted, not only the assistant's
  bool loss_not_assistant = false;  // "loss": "not_assistant": every token but the assistant's
  data::OnBad on_bad = data::OnBad::Fail;
  std::vector<std::string> trainable{""};  // name prefixes that train (default: all but the tower)
  std::vector<RecipeGroup> groups;  // per-prefix learning rate / weight decay (first match)
  int64_t tower_from = -1;          // >= 0: the tower's blocks from this one up train (the cache
                                    // then holds the hidden states below them: cache --hidden-after)
  int64_t lora_rank = 0;            // > 0: LoRA adapters on the text model (its weights frozen)
  double lora_alpha = 16;
  std::vector<std::string> lora_targets{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  double lr = 1e-3, weight_decay = 0.0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, clip = 1.0;
  int64_t warmup = 0;
  double min_lr_ratio = 0.0;
  int64_t steps = 100, batch = 4, max_len = 512;
  int64_t micro_batch_tokens = 4096;  // tokens per stacked pass; a batch beyond it accumulates gradients
  uint64_t seed = 1;
  std::string out;                  // output folder: checkpoints/, metrics.jsonl, loss.png, model/
  int64_t checkpoint_every = 0;     // steps between checkpoints (0: only the last)
  int64_t keep = 2;                 // checkpoints kept
};

// Reads and validates a recipe; unknown keys and bad values are errors naming them.
Recipe read_recipe(const std::string& path);
Recipe parse_recipe(const std::string& json_text, const std::string& path);

struct StepStats {
  int64_t step = 0, steps = 0, tokens = 0;
  int64_t first_step = 0;  // where this run started (a resumed run: its checkpoint's step)
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0, elapsed_s = 0;
};

struct TrainResult {
  std::vector<double> losses;  // of the steps run by this call
  int64_t first_step = 0;      // 0, or where a resumed run started
  std::string model_dir;       // the exported model (Hugging Face LLaVA folder)
  std::string gguf_model, gguf_mmproj;  // the same as a GGUF pair
};

// The base folder's tensors with trained ones in place (keyed by their name in the base files),
// written to dir/model.safetensors beside copies of its config, tokenizer and preprocessor files.
void export_folder(const std::string& base_dir, const std::map<std::string, Tensor>& trained, const std::string& dir);

// How a run meets its `out` folder. Fresh refuses a folder that already holds a run (metrics,
// checkpoints or an exported model); Overwrite first removes what a run writes there; Resume
// continues from the latest checkpoint (one past the recipe's steps is refused; one at them only
// exports).
enum class Start { Fresh, Resume, Overwrite };

// Checked before any work: the errors above, naming the folder. Returns the step a run starts at.
int64_t prepare_out_folder(const Recipe& r, Start start);

// Runs the recipe; stop_after > 0 ends the run after that many steps of this call (as if killed
// after its checkpoint), without exporting.
TrainResult run_recipe(const Recipe& r, Start start, const std::function<void(const StepStats&)>& on_step = {},
                       int64_t stop_after = 0);
// resume: Start::Resume, else Start::Fresh.
inline TrainResult run_recipe(const Recipe& r, bool resume, const std::function<void(const StepStats&)>& on_step = {},
                              int64_t stop_after = 0) {
  return run_recipe(r, resume ? Start::Resume : Start::Fresh, on_step, stop_after);
}

}  // namespace ocellus::train
