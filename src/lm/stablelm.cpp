// StableLM-2: LayerNorm with bias, q/k/v biases (when present), partial rotary (rotate-half),
// SwiGLU, sequential residual blocks.
#include "family_common.h"

namespace ocellus::lm {

using namespace detail;

namespace {
void stablelm_block(LmConfig& c) {
  c.norm = NormKind::Layer;
  c.act = ops::Activation::Silu;
}
Layout stablelm_layout() {
  Layout l;
  l.norm_bias = true;
  return l;
}
}  // namespace

std::unique_ptr<LanguageModel> load_stablelm(const io::GgufFile& f) {
  LmConfig c = read_common_config(f);
  stablelm_block(c);
  c.rope.mode = ops::RopeMode::RotateHalf;
  c.norm_eps = gguf_norm_eps(f, c, 1e-5f);
  return make_model(std::move(c), gguf_source(f), gguf_names(), stablelm_layout());
}

HfPlan detail::stablelm_hf_plan(const io::HfTextConfig& t) {
  LmConfig c = hf_common_config(t, "stablelm");
  stablelm_block(c);
  return {std::move(c), hf_llama_names(), stablelm_layout()};
}

}  // namespace ocellus::lm
