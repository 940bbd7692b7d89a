// Phi-2: LayerNorm with bias, q/k/v with biases (fused in GGUF), partial rotary (rotate-half),
// attention and MLP in parallel on the same normed input, GELU (tanh form) MLP with biases,
// output bias.
#include "family_common.h"

namespace ocellus::lm {

using namespace detail;

namespace {
void phi2_block(LmConfig& c) {
  c.norm = NormKind::Layer;
  c.act = ops::Activation::GeluTanh;  // gelu_new
  c.gated_ffn = false;
  c.parallel_block = true;
}
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
  phi2_block(c);
  c.rope.mode = ops::RopeMode::RotateHalf;
  c.norm_eps = gguf_norm_eps(f, c, 1e-5f);
  c.gelu_f16_table = true;  // GGUF models are computed as llama.cpp computes them
  c.prescale_q = true;
  return make_model(std::move(c), gguf_source(f), gguf_names(), phi_layout());
}

HfPlan detail::phi2_hf_plan(const io::HfTextConfig& t) {
  LmConfig c = hf_common_config(t, "phi2");
  phi2_block(c);
  return {std::move(c), hf_phi2_names(), phi_layout()};
}

}  // namespace ocellus::lm
