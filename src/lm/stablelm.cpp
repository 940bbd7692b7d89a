// StableLM-2: LayerNorm with bias, q/k/v biases (when present), partial rotary (rotate-half),
// SwiGLU, sequential residual blocks.
#include "family_common.h"

namespace ocellus::lm {

using namespace detail;

std::unique_ptr<LanguageModel> load_stablelm(const io::GgufFile& f) {
  LmConfig c = read_common_config(f);
  c.rope.mode = ops::RopeMode::RotateHalf;
  c.norm = NormKind::Layer;
  c.norm_eps = float(f.get_float(io::gguf::arch_key(c.arch, io::gguf::key::kLayerNormEps), 1e-5));
  c.act = ops::Activation::Silu;
  c.validate();
  Layout l;
  l.norm_bias = true;
  LmWeights w = load_weights(gguf_source(f), gguf_names(), c, l);
  return std::make_unique<LanguageModel>(std::move(c), std::move(w));
}

std::unique_ptr<LanguageModel> load_stablelm_hf(const io::HfTextConfig& t, const io::SafetensorsModel& m, const std::string& dir) {
  LmConfig c = hf_common_config(t, "stablelm");
  c.norm = NormKind::Layer;
  c.act = ops::Activation::Silu;
  c.validate();
  Layout l;
  l.norm_bias = true;
  LmWeights w = load_weights(hf_source(m, dir), hf_llama_names(), c, l);
  return std::make_unique<LanguageModel>(std::move(c), std::move(w));
}

}  // namespace ocellus::lm
