// A text model as a Hugging Face folder: its tensors under the family's HF names (the same Names
// tables the loaders read), llama.cpp's adjacent-pair Q/K rows put back in rotate-half order,
// fused q/k/v split; and the config.json that reads back as the same model.
#include <nlohmann/json.hpp>

#include "family_common.h"
#include "ocellus/core/error.h"
#include "ocellus/io/file.h"
#include "ocellus/io/safetensors.h"

namespace ocellus::lm {

std::vector<std::pair<std::string, Tensor>> hf_tensors(const LanguageModel& m) {
  const LmConfig& c = m.config();
  std::vector<std::pair<std::string, Tensor>> out;
  detail::for_each_named_weight(c, m.weights(), family_by_arch(c.arch).hf_names(), ops::RopeMode::RotateHalf,
                                [&](const std::string& n, const Tensor& t) { out.push_back({n, io::safetensors_storable(t)}); });
  return out;
}

std::string hf_config_json(const LanguageModel& m) {
  const LmConfig& c = m.config();
  const LmWeights& w = m.weights();
  nlohmann::json j;
  j["model_type"] = family_by_arch(c.arch).hf_model_types.front();
  j["hidden_size"] = c.n_embd, j["intermediate_size"] = c.n_ff, j["num_hidden_layers"] = c.n_layer;
  j["num_attention_heads"] = c.n_head, j["num_key_value_heads"] = c.n_head_kv, j["vocab_size"] = c.n_vocab;
  j["max_position_embeddings"] = c.n_ctx, j["rope_theta"] = c.rope.theta;
  j["partial_rotary_factor"] = double(c.rope.n_rot) / double(c.head_dim);
  j[c.norm == NormKind::Rms ? "rms_norm_eps" : "layer_norm_eps"] = c.norm_eps;
  const bool qkv_bias = !w.layers.empty() && (w.layers[0].bq.defined() || w.layers[0].bqkv.defined());
  j["use_qkv_bias"] = qkv_bias;
  j["tie_word_embeddings"] = w.output.tensor().raw() == w.token_embd.raw();
  j["hidden_act"] = hf_act_name(c.act);
  j["torch_dtype"] = "float32";
  return j.dump(2);
}

}  // namespace ocellus::lm
