// Phi-2: LayerNorm with bias, q/k/v with biases (fused in GGUF), partial rotary (rotate-half),
// attention and MLP in parallel on the same normed input, GELU (tanh form) MLP with biases,
// output bias.
#include "family_common.h"

namespace ocellus::lm {

using namespace detail;

namespace {
Layout phi_layout() {
  Layout l;
  l.norm_bias = true;
  l.gated = false;
  l.separate_ffn_norm = false;
  return l;
}
}  // namespace

std::unique_ptr<LanguageModel> load_phi2(const io::GgufFile& f) {
  LmConfig c = read_common_config(f);
  c.rope.mode = ops::RopeMode::RotateHalf;
  c.norm = NormKind::Layer;
  c.norm_eps = float(f.get_float(io::gguf::arch_key(c.arch, io::gguf::key::kLayerNormEps), 1e-5));
  c.act = ops::Activation::GeluTanh;
  c.gated_ffn = false;
  c.parallel_block = true;
  c.gelu_f16_table = true;  // GGUF models are computed as llama.cpp computes them
  c.prescale_q = true;
  c.validate();
  LmWeights w = load_weights(gguf_source(f), gguf_names(), c, phi_layout());
  return std::make_unique<LanguageModel>(std::move(c), std::move(w));
}

std::unique_ptr<LanguageModel> load_phi2_hf(const io::HfTextConfig& t, const io::SafetensorsModel& m, const std::string& dir) {
  LmConfig c = hf_common_config(t, "phi2");
  c.norm = NormKind::Layer;
  c.act = ops::Activation::GeluTanh;  // gelu_new
  c.gated_ffn = false;
  c.parallel_block = true;
  c.validate();
  Names n = hf_llama_names();
  n.out_norm = "model.final_layernorm.weight", n.out_norm_b = "model.final_layernorm.bias";
  n.o = "model.layers.%d.self_attn.dense.weight", n.o_b = "model.layers.%d.self_attn.dense.bias";
  n.up = "model.layers.%d.mlp.fc1.weight", n.up_b = "model.layers.%d.mlp.fc1.bias";
  n.down = "model.layers.%d.mlp.fc2.weight", n.down_b = "model.layers.%d.mlp.fc2.bias";
  LmWeights w = load_weights(hf_source(m, dir), n, c, phi_layout());
  return std::make_unique<LanguageModel>(std::move(c), std::move(w));
}

}  // namespace ocellus::lm
