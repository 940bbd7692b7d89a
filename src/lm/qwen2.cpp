// Qwen2: the Llama block with q/k/v biases (read when present) and rotate-half rope (llama.cpp
// keeps HF's row order for qwen2), usually tied embeddings.
#include "family_common.h"

namespace ocellus::lm {

const Family& qwen2_family() {
  static const Family f = [] {
    Family f;  // llama's block
    f.gguf_arch = "qwen2", f.hf_model_types = {"qwen2"};
    f.gguf_norm_eps = 1e-6f;
    f.hf_names = detail::hf_llama_names, f.synth_vocab_pre = "qwen2";
    return f;
  }();
  return f;
}

}  // namespace ocellus::lm
