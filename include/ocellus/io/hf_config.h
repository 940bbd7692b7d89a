#pragma once
// Hugging Face config.json read into typed per-component configs: the text model, the vision
// tower and the projector of LLaVA-style checkpoints (HF "llava" with text_config /
// vision_config, the original LLaVA's flat mm_* keys, TinyLLaVA's connector_type), plain
// language models (llama, qwen2, phi, stablelm) and plain vision towers (CLIP / SigLIP). Fields a
// config omits take the defaults of the transformers class of its model_type. Values are
// validated on load; an error names the file and the field.
#include <optional>
#include <string>
#include <vector>

namespace ocellus::io {

struct HfTextConfig {
  std::string model_type;  // "llama", "qwen2", "phi", "stablelm", ...
  int64_t hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0;
  int64_t num_attention_heads = 0, num_key_value_heads = 0;
  int64_t vocab_size = 0, max_position_embeddings = 0;
  double norm_eps = 0;               // rms_norm_eps or layer_norm_eps, whichever the family uses
  double rope_theta = 10000.0;
  double partial_rotary_factor = 1.0;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;             // qwen2 always; stablelm when use_qkv_bias
  std::string hidden_act;
  int64_t bos_token_id = -1, eos_token_id = -1;
  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

struct HfVisionConfig {
  std::string model_type;  // "clip_vision_model" or "siglip_vision_model"
  int64_t hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0, num_attention_heads = 0;
  int64_t image_size = 0, patch_size = 0, num_channels = 3, projection_dim = 0;
  double layer_norm_eps = 0;
  std::string hidden_act;
};

struct HfProjectorConfig {
  std::string type;                 // "mlp2x_gelu", "linear", ... (LLaVA's mm_projector_type)
  std::string hidden_act = "gelu";  // the MLP's activation (HF llava's projector_hidden_act)
  int64_t vision_feature_layer = -2;  // LLaVA: the penultimate layer
  std::string vision_feature_select = "patch";  // "patch" (drop the class token) or "cls_patch"
  int64_t image_token_index = -1;
  int64_t image_begin_token_id = -1, image_end_token_id = -1;  // tokens around each image, if any
  std::string image_aspect_ratio;   // "pad" (LLaVA-1.5), "square", "anyres"
  std::string vision_tower;         // name or path of the tower, when the config names one
  int64_t spatial_merge_size = 1;   // patches merged per side before the projector (1: none)
};

struct HfConfig {
  std::string path;
  std::string model_type;
  std::vector<std::string> architectures;
  std::optional<HfTextConfig> text;
  std::optional<HfVisionConfig> vision;
  std::optional<HfProjectorConfig> projector;
};

// `path` is a config.json or the folder holding it.
HfConfig read_hf_config(const std::string& path);
HfConfig parse_hf_config(const std::string& json_text, const std::string& name);

}  // namespace ocellus::io
