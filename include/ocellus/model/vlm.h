#pragma once
// The VLM's image half: a vision tower plus a connector, loaded from an mmproj GGUF file; and
// the prompt splice that puts each image's rows where its <image> placeholder stands.
#include <memory>
#include <string>
#include <vector>

#include "ocellus/connect/connector.h"
#include "ocellus/io/image.h"
#include "ocellus/vision/vit.h"

namespace ocellus::lm {
class LanguageModel;
}
namespace ocellus::text {
class Tokenizer;
}

namespace ocellus::model {

class VisionModel {
 public:
  VisionModel(vision::VisionTower tower, std::unique_ptr<connect::Connector> connector, int64_t n_embd_out)
      : tower_(std::move(tower)), connector_(std::move(connector)), n_embd_out_(n_embd_out) {}
  const vision::VitConfig& config() const { return tower_.config(); }
  const connect::Connector& connector() const { return *connector_; }
  int64_t n_embd_out() const { return n_embd_out_; }
  int64_t n_tokens_per_image() const { return connector_->n_tokens(config().n_features()); }

  // Preprocessed images, each [3, S, S], encoded as one batch; one [n_tokens, n_embd_out] each.
  std::vector<Tensor> embed(const std::vector<Tensor>& pixels) const;
  Tensor embed(const io::ImageRgb8& image) const;  // preprocessed with the model's settings

 private:
  vision::VisionTower tower_;
  std::unique_ptr<connect::Connector> connector_;
  int64_t n_embd_out_;
};

// An mmproj GGUF (general.architecture "clip", llama.cpp's layout). As llama.cpp runs LLaVA
// projectors: block_count - 1 blocks (the penultimate-layer feature) unless the file names a
// feature layer, the class token dropped, post-LayerNorm only where the file has one, and GELU /
// quick-GELU through llama.cpp's f16 tables.
std::unique_ptr<VisionModel> load_mmproj(const std::string& path);

// The prompt's input rows: text split at each `marker`; the pieces tokenized one by one (BOS
// only before the first, as LLaVA's tokenizer_image_token); image k's rows in place of marker k.
// The count of markers must equal the count of images.
struct Spliced {
  Tensor embeddings;                // [n, n_embd]
  std::vector<int32_t> ids;         // token ids, -1 at image rows
  int64_t n_image_rows = 0;
};
Spliced splice_prompt(const lm::LanguageModel& lm, const text::Tokenizer& tok, const std::string& prompt,
                      const std::vector<Tensor>& image_rows, bool add_bos, const std::string& marker = "<image>");

}  // namespace ocellus::model
