#pragma once
// The VLM's image half: a vision tower plus a connector, loaded from an mmproj GGUF file; and
// the prompt splice that puts each image's rows where its <image> placeholder stands.
#include <memory>
#include <string>
#include <vector>

#include "ocellus/connect/connector.h"
#include "ocellus/io/image.h"
#include "ocellus/lm/lm.h"
#include "ocellus/text/tokenizer.h"
#include "ocellus/vision/vit.h"

namespace ocellus::model {

// Text put around each image's rows where the model defines it (e.g. "<|vision_start|>");
// special-token text is parsed as special tokens. Empty: nothing.
struct ImageMarkers {
  std::string begin, end;
};

class VisionModel {
 public:
  VisionModel(vision::VisionTower tower, std::unique_ptr<connect::Connector> connector, int64_t n_embd_out,
              ImageMarkers markers = {})
      : tower_(std::move(tower)), connector_(std::move(connector)), n_embd_out_(n_embd_out), markers_(std::move(markers)) {}
  const vision::VitConfig& config() const { return tower_.config(); }
  const connect::Connector& connector() const { return *connector_; }
  const vision::VisionTower& tower() const { return tower_; }
  int64_t n_embd_out() const { return n_embd_out_; }
  int64_t n_tokens_per_image() const { return connector_->n_tokens(config().n_features()); }
  const ImageMarkers& markers() const { return markers_; }
  void set_markers(ImageMarkers m) { markers_ = std::move(m); }

  // Preprocessed images, each [3, S, S], encoded as one batch; one [n_tokens, n_embd_out] each.
  std::vector<Tensor> embed(const std::vector<Tensor>& pixels) const;
  Tensor embed(const io::ImageRgb8& image) const;  // preprocessed with the model's settings

 private:
  vision::VisionTower tower_;
  std::unique_ptr<connect::Connector> connector_;
  int64_t n_embd_out_;
  ImageMarkers markers_;
};

// An mmproj GGUF (general.architecture "clip", llama.cpp's layout). As llama.cpp runs LLaVA
// projectors: block_count - 1 blocks (the penultimate-layer feature) unless the file names a
// feature layer, the class token dropped, post-LayerNorm only where the file has one, and GELU /
// quick-GELU through llama.cpp's f16 tables.
std::unique_ptr<VisionModel> load_mmproj(const std::string& path);

// The image half of a Hugging Face LLaVA-style folder (config.json with a vision_config, the
// tower, the projector and the text model in its safetensors): HF llava (transformers before
// and after 4.52), the original LLaVA's mm_projector, TinyLLaVA's connector. The tower runs to
// vision_feature_layer, preprocessing follows preprocessor_config.json (LLaVA-1.5's "pad" when
// the config's image_aspect_ratio says so).
std::unique_ptr<VisionModel> load_hf_vision(const std::string& dir);

// An mmproj GGUF (llama.cpp's layout) of a tower and its projector: the tower's config (its
// feature layer in clip.vision.feature_layer, its preprocessing statistics) and tensors under
// their GGUF names (vision::vit_tensors_as: the blocks up to the feature layer), the projector
// tensors under theirs (mm.0.weight, ...) with its type name, and the spatial merge before the
// projector (clip.vision.spatial_merge_size, written when not 1).
void write_mmproj(const vision::VitConfig& c, const std::vector<std::pair<std::string, Tensor>>& tower,
                  const std::string& projector_type,
                  const std::vector<std::pair<std::string, Tensor>>& projector, int64_t n_embd_out,
                  const std::string& path, int64_t merge = 1);

// A whole VLM: the text model and its tokenizer, and the image half. `model` is a GGUF text
// model with `mmproj` an mmproj GGUF, or a Hugging Face LLaVA-style folder with `mmproj` empty
// (or naming an mmproj GGUF that replaces the folder's image half).
struct Vlm {
  std::unique_ptr<lm::LanguageModel> lm;
  text::Tokenizer tok;
  std::unique_ptr<VisionModel> vision;
  std::string text_file;  // the file or folder its chat template comes from (a LlamaFusion folder's base)
};
Vlm load_vlm(const std::string& model, const std::string& mmproj);

// The prompt's input rows, in two steps so that a prompt is checked (placeholders against images,
// its length against the context) before any image is encoded. plan_splice: text split at each
// `marker`; the pieces tokenized one by one (BOS only before the first, as LLaVA's
// tokenizer_image_token; special-token text parsed as special tokens, as chat templates write
// them), between the vision model's begin / end markers when it has them; the count of markers
// must equal the count of images. splice_prompt: image k's rows in place of marker k.
struct SplicePlan {
  std::vector<std::vector<int32_t>> text_ids;  // one piece more than images: before, between, after them
  int64_t n_text = 0;                          // text tokens in all
  int64_t n_tokens(int64_t rows_per_image) const { return n_text + int64_t(text_ids.size() - 1) * rows_per_image; }
};
SplicePlan plan_splice(const text::Tokenizer& tok, const std::string& prompt, size_t n_images, bool add_bos,
                       const std::string& marker = "<image>", const ImageMarkers& around = {});
struct Spliced {
  Tensor embeddings;                // [n, n_embd]
  std::vector<int32_t> ids;         // token ids, -1 at image rows
};
Spliced splice_prompt(const lm::LanguageModel& lm, const SplicePlan& plan, const std::vector<Tensor>& image_rows);

}  // namespace ocellus::model
