// Llama 2 / 3, TinyLlama: RMSNorm, SwiGLU, grouped-query attention. llama.cpp's converter
// permutes the Q and K rows so rotary pairs are adjacent: GGUF llama files use the adjacent-pairs
// rope layout; Hugging Face checkpoints keep rotate-half order.
#include "family_common.h"

namespace ocellus::lm {

using namespace detail;

namespace {
void llama_block(LmConfig& c) {
  c.norm = NormKind::Rms;
  c.act = ops::Activation::Silu;
}
}  // namespace

std::unique_ptr<LanguageModel> load_llama(const io::GgufFile& f) {
  LmConfig c = read_common_config(f);
  llama_block(c);
  c.rope.mode = ops::RopeMode::Adjacent;
  c.norm_eps = gguf_norm_eps(f, c, 1e-5f);
  return make_model(std::move(c), gguf_source(f), gguf_names(), Layout{});
}

HfPlan detail::llama_hf_plan(const io::HfTextConfig& t) {
  LmConfig c = hf_common_config(t, "llama");
  llama_block(c);
  return {std::move(c), hf_llama_names(), Layout{}};
}

}  // namespace ocellus::lm
