// StableLM-2: LayerNorm with bias, q/k/v biases (when present), partial rotary (rotate-half),
// SwiGLU, sequential residual blocks.
#include "family_common.h"

namespace ocellus::lm {

const Family& stablelm_family() {
  static const Family f{.gguf_arch = "stablelm",
                        .hf_model_types = {"stablelm"},
                        .norm = NormKind::Layer,
                        .layout = {.norm_bias = true},
                        .hf_names = detail::hf_llama_names,
                        .synth_vocab_pre = "stablelm2"};
  return f;
}

}  // namespace ocellus::lm
