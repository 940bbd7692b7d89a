// Qwen2: the Llama block with q/k/v biases and rotate-half rope (llama.cpp keeps HF's row
// order for qwen2), usually tied embeddings.
#include "family_common.h"

namespace ocellus::lm {

using namespace detail;

std::unique_ptr<LanguageModel> load_qwen2(const io::GgufFile& f) {
  LmConfig c = read_common_config(f);
  c.rope.mode = ops::RopeMode::RotateHalf;
  c.norm = NormKind::Rms;
  c.norm_eps = float(f.get_float(io::gguf::arch_key(c.arch, io::gguf::key::kRmsEps), 1e-6));
  c.act = ops::Activation::Silu;
  c.validate();
  LmWeights w = load_weights(gguf_source(f), gguf_names(), c, Layout{});
  return std::make_unique<LanguageModel>(std::move(c), std::move(w));
}

std::unique_ptr<LanguageModel> load_qwen2_hf(const io::HfTextConfig& t, const io::SafetensorsModel& m, const std::string& dir) {
  LmConfig c = hf_common_config(t, "qwen2");
  c.norm = NormKind::Rms;
  c.act = ops::Activation::Silu;
  c.validate();
  LmWeights w = load_weights(hf_source(m, dir), hf_llama_names(), c, Layout{});
  return std::make_unique<LanguageModel>(std::move(c), std::move(w));
}

}  // namespace ocellus::lm
