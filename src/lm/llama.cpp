// Llama 2 / 3, TinyLlama: RMSNorm, SwiGLU, grouped-query attention. llama.cpp's converter
// permutes the Q and K rows so rotary pairs are adjacent: GGUF llama files use the adjacent-pairs
// rope layout; Hugging Face checkpoints keep rotate-half order.
#include "family_common.h"

namespace ocellus::lm {

using namespace detail;

std::unique_ptr<LanguageModel> load_llama(const io::GgufFile& f) {
  LmConfig c = read_common_config(f);
  c.rope.mode = ops::RopeMode::Adjacent;
  c.norm = NormKind::Rms;
  c.norm_eps = float(f.get_float(io::gguf::arch_key(c.arch, io::gguf::key::kRmsEps), 1e-5));
  c.act = ops::Activation::Silu;
  c.validate();
  LmWeights w = load_weights(gguf_source(f), gguf_names(), c, Layout{});
  return std::make_unique<LanguageModel>(std::move(c), std::move(w));
}

std::unique_ptr<LanguageModel> load_llama_hf(const io::HfTextConfig& t, const io::SafetensorsModel& m, const std::string& dir) {
  LmConfig c = hf_common_config(t, "llama");
  c.norm = NormKind::Rms;
  c.act = ops::Activation::Silu;
  c.validate();
  LmWeights w = load_weights(hf_source(m, dir), hf_llama_names(), c, Layout{});
  return std::make_unique<LanguageModel>(std::move(c), std::move(w));
}

}  // namespace ocellus::lm
