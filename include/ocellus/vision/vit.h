#pragma once
// The ViT family of vision towers: CLIP (class token, pre-LayerNorm, quick-GELU) and SigLIP (no
// class token, patch-embedding bias, GELU-tanh, post-LayerNorm), one class with the knobs they
// differ by. Encoding a batch runs one GEMM per matrix per layer over all images' rows.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ocellus/core/error.h"
#include "ocellus/core/tensor.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/ops/elementwise.h"
#include "ocellus/ops/matmul.h"
#include "ocellus/vision/encoder_block.h"
#include "ocellus/vision/preprocess.h"

namespace ocellus::vision {

struct VitConfig {
  std::string kind = "clip";   // "clip" or "siglip" (labels only; the flags below decide)
  int64_t image_size = 0, patch_size = 0, n_embd = 0, n_ff = 0, n_head = 0;
  int64_t n_layer = 0;         // blocks in the weights
  int64_t n_layer_run = 0;     // blocks run: the feature layer (LLaVA: the penultimate)
  float norm_eps = 1e-5f;
  ops::Activation act = ops::Activation::QuickGelu;
  bool act_ggml_f16 = false;   // the activation through llama.cpp's f16 tables (GGUF numerics)
  bool ggml_order = false;     // f32 products, LayerNorm and attention rounded as llama.cpp's CPU graph does
  bool class_token = true;     // CLIP: a learned class token at position 0
  bool pre_norm = true;        // CLIP's pre_layrnorm after the embeddings
  bool post_norm = false;      // LayerNorm on the features (SigLIP's final layer)
  bool drop_class_token = true;  // LLaVA's "patch" feature selection
  PreprocessConfig preprocess;

  int64_t grid() const { return image_size / patch_size; }
  int64_t n_patches() const { return grid() * grid(); }
  int64_t n_positions() const { return n_patches() + (class_token ? 1 : 0); }
  int64_t n_features() const { return class_token && !drop_class_token ? n_positions() : n_patches(); }
  // Throws naming the field, after `where` (the file the config came from) when given.
  void validate(const std::string& where = "") const;
};

using VitBlock = EncoderBlock<nn::Infer>;  // the tower's blocks as inference holds them

// The tower's tensors in a forward context's types (absent ones empty). Inference holds every
// block up to the feature layer; training may hold the upper blocks only (blocks[0] is then the
// first block trained, and the embeddings are empty).
template <class F>
struct Vit {
  typename F::P patch_w, patch_b;      // [d, 3, p, p], [d] (SigLIP)
  typename F::P class_embd;            // [d] (CLIP)
  typename F::P pos_embd;              // [n_pos, d]
  typename F::P pre_ln_w, pre_ln_b, post_ln_w, post_ln_b;
  std::vector<EncoderBlock<F>> blocks;
};
using VitWeights = Vit<nn::Infer>;

// Tensor names of a tower in one file layout; the block names take the block index.
struct VitNames : EncoderBlockNames {
  std::string patch_w, patch_b, class_embd, pos_embd, pre_ln_w, pre_ln_b, post_ln_w, post_ln_b;
};
VitNames gguf_vit_names();
VitNames hf_vit_names(const std::string& prefix);  // prefix up to and including "vision_model."
// The tensors the config asks for, read by the maker in one order (init and synth write them in
// it): upper_from < 0: the embeddings (patches, class token, positions, pre-LayerNorm) and the
// blocks up to the feature layer (those past it are never read); k >= 0: blocks k .. n_layer_run - 1
// only (training the upper blocks from a stored hidden state). Then the post-LayerNorm where the
// config has one.
template <class F>
Vit<F> load_vit(const nn::Maker<F>& mk, const VitConfig& c, const VitNames& n, int64_t upper_from = -1);
// An inference tower from a file (the config validated; positions f32).
VitWeights load_vit_weights(const VitConfig& c, const io::TensorSource& s, const VitNames& n);
// The forward context a tower's config asks for (llama.cpp's orders for GGUF towers).
nn::Infer vit_context(const VitConfig& c);
inline EncoderParams encoder_params(const VitConfig& c) { return {c.n_head, c.act, c.norm_eps}; }
// The embeddings of every image, stacked [B * n_positions, d]: patches (after the class token
// where the tower has one) plus positions, then the pre-LayerNorm where it has one. images: each
// [3, S, S] float CHW (preprocessed).
template <class F>
typename F::V vit_embeddings(const F& f, const VitConfig& c, const Vit<F>& w, const std::vector<Tensor>& images) {
  OCELLUS_CHECK(!images.empty(), "vision: no images to encode");
  const int64_t B = int64_t(images.size()), d = c.n_embd, np = c.n_positions(), S = c.image_size;
  std::vector<typename F::V> rows;
  for (int64_t b = 0; b < B; ++b) {
    const Tensor& img = images[size_t(b)];
    OCELLUS_CHECK(img.ndim() == 3 && img.dim(0) == 3 && img.dim(1) == S && img.dim(2) == S, "vision: image ", b,
                  " has shape ", img.shape().str(), ", expected [3, ", S, ", ", S, "]");
    const typename F::V x = f.patch_embed(img, w.patch_w, w.patch_b, c.patch_size);  // [n_patches, d]
    rows.push_back(c.class_token ? f.concat({f.reshape(w.class_embd, {1, d}), x}, 0) : x);
  }
  const typename F::V h = f.reshape(f.add(f.reshape(f.concat(rows, 0), {B, np, d}), w.pos_embd), {B * np, d});
  return c.pre_norm ? f.layer_norm(h, w.pre_ln_w, w.pre_ln_b, c.norm_eps) : h;
}
// Blocks over a stacked hidden state h [B * n_positions, d] (each image's rows attend within
// themselves). Both forward contexts run it: inference the whole tower, training its upper blocks.
template <class F>
typename F::V vit_blocks(const F& f, const VitConfig& c, std::span<const EncoderBlock<F>> blocks, typename F::V h) {
  const int64_t np = c.n_positions(), n = F::shape(h)[0];
  std::vector<int64_t> starts;
  for (int64_t a = 0; a <= n; a += np) starts.push_back(a);
  for (const EncoderBlock<F>& b : blocks) h = encoder_block(f, b, h, encoder_params(c), starts);
  return h;
}
// After the last block: the post-LayerNorm where the tower has one, and the feature rows only
// (the class token dropped where LLaVA drops it): [B * n_features, d].
template <class F>
typename F::V vit_features(const F& f, const VitConfig& c, typename F::V h, const typename F::P& post_w,
                           const typename F::P& post_b) {
  if (c.post_norm) h = f.layer_norm(h, post_w, post_b, c.norm_eps);
  const int64_t np = c.n_positions(), skip = np - c.n_features();
  if (skip == 0) return h;
  std::vector<int32_t> keep;
  for (int64_t b = 0; b < F::shape(h)[0] / np; ++b)
    for (int64_t i = skip; i < np; ++i) keep.push_back(int32_t(b * np + i));
  return f.rows(h, keep);
}

// A tower from a Hugging Face vision config (CLIPVisionModel / SiglipVisionModel), computed with
// exact float math. feature_layer as LLaVA's vision_feature_layer: 0 runs every block and the
// post-LayerNorm (last_hidden_state); -k takes hidden_states[-k] (n_layer + 1 - k blocks, no
// post-LayerNorm); k > 0 takes hidden_states[k]. Preprocessing: SigLIP squashes with mean and
// std 0.5, CLIP resizes the shortest edge and centre-crops with CLIP's statistics.
// Errors start with `where` (the config file) when given.
VitConfig vit_config_from_hf(const io::HfVisionConfig& v, int64_t feature_layer = 0, const std::string& where = "");
// The prefix under which a checkpoint keeps the tower's tensors: "vision_model." (plain towers),
// "vision_tower.vision_model." (HF LLaVA), "model.vision_tower.vision_model." (newer HF LLaVA),
// "model.vision_tower.vision_tower.vision_model." (original LLaVA); an error lists them if none fits.
std::string find_hf_vit_prefix(const io::TensorSource& s);

// The tower's tensors read from s under names `from`, named as `to` names them (nn::tensors_as;
// export as GGUF or a Hugging Face checkpoint): what load_vit reads for the config, as stored
// (vectors f32).
std::vector<std::pair<std::string, Tensor>> vit_tensors_as(const VitConfig& c, const io::TensorSource& s, const VitNames& from,
                                                           const VitNames& to);

class VisionTower {
 public:
  VisionTower(VitConfig c, VitWeights w);
  const VitConfig& config() const { return c_; }
  const VitWeights& weights() const { return w_; }
  // images: each [3, S, S] float CHW (preprocessed). Returns [n_images, n_features, d].
  Tensor encode(const std::vector<Tensor>& images) const;
  // The hidden state after the first `blocks` blocks (embeddings, pre-LayerNorm), every
  // position (class token included): [n_images, n_positions, d]. Training the upper blocks
  // starts from it (the embedding cache stores it).
  Tensor hidden(const std::vector<Tensor>& images, int64_t blocks) const;

 private:
  VitConfig c_;
  VitWeights w_;
};

// A plain tower folder (config.json with a CLIP / SigLIP vision config, *.safetensors, and
// preprocessor_config.json when present: it overrides the kind's default preprocessing).
VisionTower load_hf_tower(const std::string& dir, int64_t feature_layer = 0);

}  // namespace ocellus::vision
