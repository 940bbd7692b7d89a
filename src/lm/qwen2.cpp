// Qwen2: the Llama block with q/k/v biases (read when present) and rotate-half rope (llama.cpp
// keeps HF's row order for qwen2), usually tied embeddings.
#include "family_common.h"

namespace ocellus::lm {

using namespace detail;

namespace {
void qwen2_block(LmConfig& c) {
  c.norm = NormKind::Rms;
  c.act = ops::Activation::Silu;
}
}  // namespace

std::unique_ptr<LanguageModel> load_qwen2(const io::GgufFile& f) {
  LmConfig c = read_common_config(f);
  qwen2_block(c);
  c.rope.mode = ops::RopeMode::RotateHalf;
  c.norm_eps = gguf_norm_eps(f, c, 1e-6f);
  return make_model(std::move(c), gguf_source(f), gguf_names(), Layout{});
}

HfPlan detail::qwen2_hf_plan(const io::HfTextConfig& t) {
  LmConfig c = hf_common_config(t, "qwen2");
  qwen2_block(c);
  return {std::move(c), hf_llama_names(), Layout{}};
}

}  // namespace ocellus::lm
