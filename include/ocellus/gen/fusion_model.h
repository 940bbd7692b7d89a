#pragma once
// LlamaFusion's whole model (Shi et al. 2024): a text model (a GGUF file, frozen), beside each of
// its layers an image module of the same shapes (gen/fusion.h), begin / end-of-image rows, a
// final norm for the image positions, and the U-Net ends (gen/unet.h) over the latents of a VAE
// (gen/vae.h). A sequence is [text before] BOI [image positions] EOI [text after]: a caption
// before the image asks for the image (generation), a caption after it describes the image
// (understanding). BOI and EOI are text positions with learned embeddings, outside the
// vocabulary, so the base model's vocabulary, and its logits on text alone, stay as they were.
//
// Training (TrainableFusion, nn::Train) runs whole sequences through gen::fusion_layer under the
// fusion mask. Inference (FusionModel, nn::Infer) runs the same blocks over a KV cache: text
// through the base model itself (lm::LanguageModel::forward), an image's positions through
// the image modules, attending to the cache and to each other (LanguageModel::forward_rows).
// Both read the same files: config.json and model.safetensors (the image side; a model whose
// text trained too, Transfusion-style, holds the text tensors there as well, over the base's).
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ocellus/autograd/autograd.h"
#include "ocellus/gen/scheduler.h"
#include "ocellus/gen/unet.h"
#include "ocellus/gen/vae.h"
#include "ocellus/lm/lm.h"
#include "ocellus/text/tokenizer.h"

namespace ocellus::io {
class GgufFile;
class SafetensorsModel;
}

namespace ocellus::gen {

struct FusionConfig {
  std::string base;  // the text model (GGUF); relative: to the model's folder
  std::string vae;   // the VAE's folder; relative: to the model's folder
  std::vector<int64_t> block_out_channels = {64, 128};  // the U-Net's levels
  int64_t norm_num_groups = 8;
  // false: Transfusion's single set of modules (image positions through the text's layers and
  // final norm), the paper's ablation.
  bool modality_specific = true;
  int64_t train_steps = 1000;  // the noise schedule (gen/scheduler.h)
  double beta_start = 1e-4, beta_end = 0.02;

  UNetConfig unet(const VaeConfig& v, int64_t d_model) const;
};
// config.json ("model_type": "llamafusion"); unknown keys and bad values are errors naming them.
FusionConfig parse_fusion_config(const std::string& json_text, const std::string& where);
std::string fusion_config_json(const FusionConfig& c);

// The image side's weights: the image modules as a decoder of the base's shapes (its layers and
// final norm are the image's; its token table and head are the text's, unused), the BOI and EOI
// rows [n_embd], the U-Net. Tensor names: "image." + the base's GGUF names, "image.boi",
// "image.eoi", the U-Net under "image.unet.".
template <class F>
struct FusionWeights {
  lm::DecoderWeights<F> image;
  typename F::P boi, eoi;
  UNet<F> unet;
};
// modules: the image modules' tensors ("image.blk.0.attn_q.weight", ...); rest: BOI, EOI and the
// U-Net. Without modality_specific, the image side is `text`.
template <class F>
FusionWeights<F> load_fusion_weights(const nn::Maker<F>& modules, const nn::Maker<F>& rest, const FusionConfig& c,
                                     const UNetConfig& u, const lm::LmConfig& lc, const lm::DecoderWeights<F>& text);

// The token ids of a caption in a sequence: generation reads them before the image,
// understanding predicts them after it, ending with the end-of-sequence token.
std::vector<int32_t> caption_before(const text::Tokenizer& tok, const std::string& caption);
std::vector<int32_t> caption_after(const text::Tokenizer& tok, const std::string& caption);

// One training sequence: before, BOI, the image's positions, EOI, after.
struct FusionSample {
  std::vector<int32_t> before, after;
  Tensor latent;      // [h, h, latent]: the image as the model reads it (noisy when diffused)
  float timestep = 0;
  Tensor noise;       // defined: the image is diffused and its predicted noise is in the loss
};

class TrainableFusion {
 public:
  // From the base (its layers copied into the image modules; BOI, EOI and the U-Net new, from
  // seed), or with `init` (a model folder's model.safetensors) from a trained model: its image
  // side, and its text where it holds text. Every parameter requires a gradient; the caller
  // freezes what does not train.
  TrainableFusion(const FusionConfig& c, const io::GgufFile& base, const VaeConfig& vae, uint64_t seed,
                  const io::TensorSource* init = nullptr);
  const FusionConfig& config() const { return c_; }
  const lm::LmConfig& lm_config() const { return lc_; }
  const UNetConfig& unet_config() const { return u_; }
  const std::vector<ag::Var>& params() const { return params_; }
  ag::Var param(const std::string& name) const { return ag::find_param(params_, name, "fusion"); }

  struct Outputs {
    ag::Var logits;  // [Σ rows, n_vocab]: every row of every sequence
    ag::Var noise;   // [B, h, h, latent]: the predicted noise of every image (diffused or not)
  };
  Outputs forward(const std::vector<FusionSample>& batch) const;
  // The batch's mean of each sequence's loss: the mean cross-entropy of its next text tokens
  // (every text token after the first, the first after EOI predicted from EOI) plus
  // image_weight times the MSE of its predicted noise when the image is diffused. The batch's
  // two terms' means go to *ce and *mse when given.
  ag::Var loss(const std::vector<FusionSample>& batch, float image_weight, float* ce = nullptr, float* mse = nullptr) const;

  // Writes the model folder: config.json (base and vae as given) and model.safetensors with the
  // image side and every text parameter that trains, matrices and kernels at `dtype`.
  void save(const std::string& dir, const FusionConfig& as_written, DType dtype = DType::F32) const;

 private:
  struct Rows;
  Rows layout(const std::vector<FusionSample>& batch) const;
  ag::Var hidden(const std::vector<FusionSample>& batch, const Rows& r, UNetDown<nn::Train>* down) const;

  FusionConfig c_;
  lm::LmConfig lc_;
  UNetConfig u_;
  std::vector<ag::Var> params_;
  lm::DecoderWeights<nn::Train> text_;
  FusionWeights<nn::Train> w_;
};

// The language model of a LlamaFusion folder as its text runs (the base, with any text tensors
// the folder holds over it): with the base's vision projector it is the VLM the image modules
// were added to (model::load_vlm reads a LlamaFusion folder this way). *base_path: the base's file.
std::unique_ptr<lm::LanguageModel> load_fusion_text(const std::string& dir, std::string* base_path = nullptr);
// Whether dir is a LlamaFusion folder (config.json with model_type "llamafusion").
bool is_fusion_folder(const std::string& dir);

class FusionModel {
 public:
  // A model folder (config.json, model.safetensors); its base and VAE where config.json says.
  explicit FusionModel(const std::string& dir);
  ~FusionModel();
  const FusionConfig& config() const { return c_; }
  const std::string& base_path() const { return base_path_; }  // the base text model's file, resolved
  const lm::LanguageModel& lm() const { return *lm_; }
  const text::Tokenizer& tokenizer() const { return *tok_; }
  const UNetConfig& unet_config() const { return u_; }
  const VaeConfig& vae_config() const { return vc_; }
  const NoiseSchedule& schedule() const { return sched_; }
  int64_t image_rows() const { return u_.n_positions(); }

  // A KV cache for a sequence of n positions (f32, as training computes).
  lm::KvCache cache(int64_t n) const { return lm::KvCache(lm_->config(), n, DType::F32); }
  // The BOI or EOI row [1, n_embd] at the cache's next position through the text's layers.
  void push_marker(bool begin, lm::KvCache& cache) const;
  // Logits [1, n_vocab] of the last of rows pushed with the text's layers (text, or EOI).
  Tensor push_text(const std::vector<int32_t>& ids, lm::KvCache& cache, bool eoi_first = false) const;
  // The predicted noise [1, h, h, latent] of a latent [1, h, h, latent] at timestep t, its
  // positions at the cache's next ones (not kept: the cache holds the text before the image).
  Tensor predict_noise(const Tensor& latent, float t, lm::KvCache& cache) const;
  // An image's latent pushed into the cache as context (understanding): timestep 0.
  void push_image(const Tensor& latent, lm::KvCache& cache) const;

  // Images [B, S, S, C] in [-1, 1] <-> latents as diffusion sees them (times scaling_factor).
  Tensor encode(const Tensor& images) const;
  Tensor decode(const Tensor& latents) const;

 private:
  FusionConfig c_;
  std::string base_path_;
  UNetConfig u_;
  VaeConfig vc_;
  NoiseSchedule sched_;
  std::unique_ptr<io::SafetensorsModel> st_, vae_st_;
  std::unique_ptr<lm::LanguageModel> lm_;
  std::unique_ptr<text::Tokenizer> tok_;
  FusionWeights<nn::Infer> w_;
  Vae<nn::Infer> vae_;
};

struct ImageSampling {
  int64_t steps = 50;
  float cfg = 3.0f;   // classifier-free guidance scale (1: none)
  uint64_t seed = 0;
  bool ddpm = false;  // DDPM's stochastic steps instead of DDIM's
};
// Draws an image [S, S, C] in [-1, 1] for a caption; progress(step, steps) after each step.
Tensor generate_image(const FusionModel& m, const std::string& caption, const ImageSampling& s,
                      const std::function<void(int64_t, int64_t)>& progress = {});
// The caption the model writes for an image [S, S, C] in [-1, 1] (greedy, up to max_tokens).
std::string describe_image(const FusionModel& m, const Tensor& image, int64_t max_tokens = 64);

}  // namespace ocellus::gen
