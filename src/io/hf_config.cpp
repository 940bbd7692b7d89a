#include "ocellus/io/json.h"
#include "ocellus/io/hf_config.h"

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/io/file.h"

namespace ocellus::io {

namespace {

using json = nlohmann::json;

// Typed field access with the file and field named in every error.
struct Fields {
  const json& j;
  const std::string& file;
  std::string scope;  // "text_config." etc.

  [[noreturn]] void bad(const std::string& key, const std::string& problem) const {
    fail("config: ", file, ": ", scope, key, ": ", problem);
  }
  bool has(const std::string& key) const { return j.contains(key) && !j[key].is_null(); }
  // The value of key (fallback when absent or null); its JSON type must pass `is`.
  template <typename T>
  T get(const std::string& key, T fallback, bool (json::*is)() const noexcept, const char* expected) const {
    if (!has(key)) return fallback;
    if (!(j[key].*is)()) bad(key, std::string("expected ") + expected + ", found " + j[key].dump());
    return j[key].get<T>();
  }
  int64_t integer(const std::string& key, int64_t fallback) const {
    return get(key, fallback, &json::is_number_integer, "an integer");
  }
  double number(const std::string& key, double fallback) const { return get(key, fallback, &json::is_number, "a number"); }
  bool boolean(const std::string& key, bool fallback) const { return get(key, fallback, &json::is_boolean, "true or false"); }
  std::string string(const std::string& key, const std::string& fallback) const {
    return get(key, fallback, &json::is_string, "a string");
  }
  // eos_token_id may be a list (Llama 3): the first one.
  int64_t token_id(const std::string& key) const {
    if (!has(key)) return -1;
    if (j[key].is_array() && !j[key].empty() && j[key][0].is_number_integer()) return j[key][0].get<int64_t>();
    return integer(key, -1);
  }
  void positive(const std::string& key, int64_t v) const {
    if (v <= 0) bad(key, "must be positive, is " + std::to_string(v));
  }
};

// Defaults of transformers' config classes for the fields configs commonly omit.
HfTextConfig text_defaults(const std::string& type) {
  HfTextConfig t;
  t.model_type = type;
  if (type == "qwen2") {
    t.hidden_size = 4096, t.intermediate_size = 22016, t.num_hidden_layers = 32, t.num_attention_heads = 32;
    t.num_key_value_heads = 32, t.vocab_size = 151936, t.max_position_embeddings = 32768, t.norm_eps = 1e-6;
    t.hidden_act = "silu", t.qkv_bias = true;
  } else if (type == "phi") {
    t.hidden_size = 2048, t.intermediate_size = 8192, t.num_hidden_layers = 24, t.num_attention_heads = 32;
    t.vocab_size = 51200, t.max_position_embeddings = 2048, t.norm_eps = 1e-5, t.partial_rotary_factor = 0.5;
    t.hidden_act = "gelu_new", t.qkv_bias = true;
  } else if (type == "stablelm") {
    t.hidden_size = 2560, t.intermediate_size = 6912, t.num_hidden_layers = 32, t.num_attention_heads = 32;
    t.num_key_value_heads = 32, t.vocab_size = 50304, t.max_position_embeddings = 4096, t.norm_eps = 1e-5;
    t.partial_rotary_factor = 0.25, t.hidden_act = "silu";
  } else {  // llama and LLaVA's llama-based variants
    t.hidden_size = 4096, t.intermediate_size = 11008, t.num_hidden_layers = 32, t.num_attention_heads = 32;
    t.vocab_size = 32000, t.max_position_embeddings = 2048, t.norm_eps = 1e-6, t.hidden_act = "silu";
  }
  return t;
}

HfTextConfig parse_text(const Fields& f, std::string type) {
  if (type.empty()) type = "llama";  // (LLaVA's flat configs name llama by their own types: lm/llama.cpp)
  HfTextConfig t = text_defaults(type);
  using T = HfTextConfig;
  for (const auto& [key, field] : {std::pair{"hidden_size", &T::hidden_size}, {"intermediate_size", &T::intermediate_size},
                                   {"num_hidden_layers", &T::num_hidden_layers}, {"num_attention_heads", &T::num_attention_heads},
                                   {"num_key_value_heads", &T::num_key_value_heads}, {"vocab_size", &T::vocab_size},
                                   {"max_position_embeddings", &T::max_position_embeddings}}) {
    if (field == &T::num_key_value_heads && t.num_key_value_heads == 0) t.num_key_value_heads = t.num_attention_heads;
    t.*field = f.integer(key, t.*field);
    f.positive(key, t.*field);
  }
  t.norm_eps = f.number(f.has("rms_norm_eps") ? "rms_norm_eps" : "layer_norm_eps", t.norm_eps);
  t.rope_theta = f.number("rope_theta", t.rope_theta);
  t.partial_rotary_factor = f.number("partial_rotary_factor", t.partial_rotary_factor);
  t.tie_word_embeddings = f.boolean("tie_word_embeddings", t.tie_word_embeddings);
  if (type == "stablelm") t.qkv_bias = f.boolean("use_qkv_bias", false);
  else if (!t.qkv_bias) t.qkv_bias = f.boolean("attention_bias", false);  // llama's (qwen2 and phi have them always)
  t.hidden_act = f.string("hidden_act", t.hidden_act);
  t.bos_token_id = f.token_id("bos_token_id");
  t.eos_token_id = f.token_id("eos_token_id");
  if (t.hidden_size % t.num_attention_heads != 0)
    f.bad("num_attention_heads", std::to_string(t.num_attention_heads) + " does not divide hidden_size " + std::to_string(t.hidden_size));
  if (t.num_attention_heads % t.num_key_value_heads != 0)
    f.bad("num_key_value_heads", std::to_string(t.num_key_value_heads) + " does not divide num_attention_heads " +
                                     std::to_string(t.num_attention_heads));
  if (!(t.partial_rotary_factor > 0 && t.partial_rotary_factor <= 1))
    f.bad("partial_rotary_factor", "must be in (0, 1]");
  if (!(t.norm_eps > 0)) f.bad("rms_norm_eps", "must be positive");
  return t;
}

HfVisionConfig parse_vision(const Fields& f, const std::string& fallback_type) {
  HfVisionConfig v;
  v.model_type = f.string("model_type", fallback_type);
  const bool siglip = v.model_type.rfind("siglip", 0) == 0;
  v.hidden_size = f.integer("hidden_size", 768);
  v.intermediate_size = f.integer("intermediate_size", 3072);
  v.num_hidden_layers = f.integer("num_hidden_layers", 12);
  v.num_attention_heads = f.integer("num_attention_heads", 12);
  v.image_size = f.integer("image_size", 224);
  v.patch_size = f.integer("patch_size", siglip ? 16 : 32);
  v.num_channels = f.integer("num_channels", 3);
  v.projection_dim = f.integer("projection_dim", siglip ? 0 : 512);
  v.layer_norm_eps = f.number("layer_norm_eps", siglip ? 1e-6 : 1e-5);
  v.hidden_act = f.string("hidden_act", siglip ? "gelu_pytorch_tanh" : "quick_gelu");
  for (const char* k : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                        "image_size", "patch_size", "num_channels"})
    f.positive(k, f.integer(k, 1));
  if (v.hidden_size % v.num_attention_heads != 0) f.bad("num_attention_heads", "does not divide hidden_size");
  // Not required to divide: SigLIP-so400m/14 at 384 px has 27x27 patches, the last 6 px unused.
  if (v.patch_size > v.image_size) f.bad("patch_size", "is larger than image_size");
  return v;
}

}  // namespace

HfConfig parse_hf_config(const std::string& text, const std::string& name) {
  const json j = parse_json(text, name, "config");
  if (!j.is_object()) fail("config: ", name, ": not a JSON object");
  Fields top{j, name, ""};
  HfConfig c;
  c.path = name;
  c.model_type = top.string("model_type", "");
  if (top.has("architectures") && j["architectures"].is_array())
    for (const json& a : j["architectures"])
      if (a.is_string()) c.architectures.push_back(a.get<std::string>());
  const std::string& mt = c.model_type;

  if (mt == "clip_vision_model" || mt == "siglip_vision_model") {
    c.vision = parse_vision(top, mt);
    return c;
  }
  if (mt == "clip" || mt == "siglip") {  // contrastive pair: the vision half is what a VLM uses
    if (!top.has("vision_config") || !j["vision_config"].is_object()) top.bad("vision_config", "missing");
    c.vision = parse_vision(Fields{j["vision_config"], name, "vision_config."}, mt + "_vision_model");
    return c;
  }
  if (top.has("text_config")) {
    if (!j["text_config"].is_object()) top.bad("text_config", "is not an object");
    Fields tf{j["text_config"], name, "text_config."};
    c.text = parse_text(tf, tf.string("model_type", "llama"));
  } else {
    if (mt.empty() && !top.has("hidden_size")) fail("config: ", name, ": no model_type and no text model fields");
    c.text = parse_text(top, mt);
  }
  if (top.has("vision_config")) {
    if (!j["vision_config"].is_object()) top.bad("vision_config", "is not an object");
    c.vision = parse_vision(Fields{j["vision_config"], name, "vision_config."}, "clip_vision_model");
  }
  // The projector: HF llava keys, the original LLaVA's mm_* keys, TinyLLaVA's connector_type.
  const bool has_proj = top.has("mm_projector_type") || top.has("connector_type") || top.has("projector_hidden_act") ||
                        top.has("mm_vision_tower") || c.vision.has_value();
  if (has_proj) {
    HfProjectorConfig p;
    p.type = top.string("mm_projector_type", top.string("connector_type", ""));
    if (p.type.empty()) p.type = "mlp2x_gelu";  // HF llava: linear, projector_hidden_act, linear
    p.hidden_act = top.string("projector_hidden_act", "gelu");
    p.vision_feature_layer = top.integer("mm_vision_select_layer", top.integer("vision_feature_layer", -2));
    const std::string sel = top.string("mm_vision_select_feature", top.string("vision_feature_select_strategy", "patch"));
    p.vision_feature_select = (sel == "default" || sel == "patch") ? "patch" : (sel == "full" ? "cls_patch" : sel);
    if (p.vision_feature_select != "patch" && p.vision_feature_select != "cls_patch")
      top.bad("vision_feature_select_strategy", "unknown value '" + sel + "'");
    p.image_token_index = top.integer("image_token_index", top.integer("image_token_id", -1));
    p.image_aspect_ratio = top.string("image_aspect_ratio", "");
    // Begin / end-of-image tokens, under Qwen2-VL's or Gemma 3's names.
    p.image_begin_token_id = top.integer("vision_start_token_id", top.integer("boi_token_index", -1));
    p.image_end_token_id = top.integer("vision_end_token_id", top.integer("eoi_token_index", -1));
    p.vision_tower = top.string("mm_vision_tower", top.string("vision_tower", ""));
    p.spatial_merge_size = top.integer("spatial_merge_size", 1);
    if (p.spatial_merge_size < 1) top.bad("spatial_merge_size", "must be >= 1");
    c.projector = p;
  }
  return c;
}

HfConfig read_hf_config(const std::string& path) {
  const std::string file = is_directory(path) ? path + "/config.json" : path;
  return parse_hf_config(read_text_file(file, size_t(16) << 20), file);
}

}  // namespace ocellus::io
