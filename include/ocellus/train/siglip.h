#pragma once
// SigLIP pretraining of a vision tower (Zhai et al. 2023, "Sigmoid Loss for Language Image
// Pre-Training"): the tower of a LLaVA-style folder (every block and the post-LayerNorm, patch
// and position embeddings) and a small text tower are trained together on image / caption pairs
// with the pairwise sigmoid loss; each side is mean-pooled and projected into a shared space.
// The recipe's `"objective": "siglip"` runs it through `ocellus train`; the result is the base
// folder with the trained tower in place (the text tower and heads are kept beside it), which
// the connector and instruction stages then read.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ocellus/autograd/autograd.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/model/vlm_train.h"
#include "ocellus/train/trainer.h"
#include "ocellus/vision/vit.h"

namespace ocellus::train {

class SiglipModel {
 public:
  // The tower's tensors from s (HF names under any LLaVA / tower prefix; a SigLIP-style tower:
  // no class token), a new text tower of o's sizes over n_vocab tokens (transformers' init,
  // seeded), heads to o.embed_dim, log-scale log 10 and bias -10 as the paper starts them.
  SiglipModel(const vision::VitConfig& vc, const io::TensorSource& s, int64_t n_vocab, const SiglipOptions& o, uint64_t seed);

  // Tower parameters under "vision_tower.vision_model.*", the rest under "siglip.*".
  const std::vector<ag::Var>& params() const { return params_; }
  ag::Var param(const std::string& name) const { return ag::find_param(params_, name, "siglip"); }
  std::vector<std::pair<std::string, Tensor>> tensors() const { return ag::named_values(params_); }
  // The base folder with the trained tower in place, into dir (model::export_hf_folder); the
  // text tower and heads into heads_path (safetensors, under their "siglip.*" names).
  void export_folder(const std::string& base_dir, const std::string& dir, const std::string& heads_path) const;

  // Images (preprocessed [3, S, S]) -> [B, e]; token sequences -> [B, e] (truncated to max_text_len).
  ag::Var image_embeddings(const std::vector<Tensor>& pixels) const;
  ag::Var text_embeddings(const std::vector<std::vector<int32_t>>& ids) const;
  // The sigmoid loss of B matching pairs (scalar [1]).
  ag::Var loss(const std::vector<Tensor>& pixels, const std::vector<std::vector<int32_t>>& ids) const;

 private:
  ag::Var add(const std::string& name, Tensor value);
  vision::VitConfig vc_;
  SiglipOptions o_;
  std::vector<ag::Var> params_;
  std::map<std::string, std::string> file_names_;  // tower parameter -> its name in the file read
  vision::Vit<nn::Train> tower_;
  ag::Var tok_, tpos_, tnorm_w_, tnorm_b_, vhead_w_, vhead_b_, thead_w_, thead_b_, log_scale_, bias_;
  std::vector<vision::EncoderBlock<nn::Train>> tblocks_;
};

}  // namespace ocellus::train
