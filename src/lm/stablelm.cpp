// StableLM-2: LayerNorm with bias, q/k/v biases (when present), partial rotary (rotate-half),
// SwiGLU, sequential residual blocks.
#include "family_common.h"

namespace ocellus::lm {

const Family& stablelm_family() {
  static const Family f = [] {
    Family f;
    f.gguf_arch = "stablelm", f.hf_model_types = {"stablelm"};
    f.norm = NormKind::Layer, f.layout.norm_bias = true;
    f.hf_names = detail::hf_llama_names, f.synth_vocab_pre = "stablelm2";
    return f;
  }();
  return f;
}

}  // namespace ocellus::lm
