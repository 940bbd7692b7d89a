// Llama 2 / 3, TinyLlama (and Mistral-style files): RMSNorm, SwiGLU, grouped-query attention.
// llama.cpp's converter permutes the Q and K rows so that rotary pairs are adjacent: GGUF llama
// files use the adjacent-pairs rope layout.
#include "family_common.h"

namespace ocellus::lm {

std::unique_ptr<LanguageModel> load_llama(const io::GgufFile& f) {
  using namespace detail;
  LmConfig c = read_common_config(f);
  c.rope.mode = ops::RopeMode::Adjacent;
  c.norm = NormKind::Rms;
  c.norm_eps = float(f.get_float(io::gguf::arch_key(c.arch, io::gguf::key::kRmsEps), 1e-5));
  c.act = ops::Activation::Silu;
  c.gated_ffn = true;
  c.validate();
  LmWeights w;
  w.token_embd = required(f, tn::kTokenEmbd, {c.n_vocab, c.n_embd});
  for (int i = 0; i < int(c.n_layer); ++i) {
    LayerWeights L;
    L.attn_norm = required(f, name(tn::kAttnNorm, i), {c.n_embd});
    load_attention(f, c, i, L);
    L.ffn_norm = required(f, name(tn::kFfnNorm, i), {c.n_embd});
    load_gated_ffn(f, c, i, L);
    w.layers.push_back(std::move(L));
  }
  load_output(f, c, w, false);
  return std::make_unique<LanguageModel>(std::move(c), std::move(w));
}

}  // namespace ocellus::lm
