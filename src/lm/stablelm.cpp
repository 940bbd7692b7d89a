// StableLM-2: LayerNorm with bias, q/k/v biases (when present), partial rotary (rotate-half),
// SwiGLU, sequential residual blocks.
#include "family_common.h"

namespace ocellus::lm {

std::unique_ptr<LanguageModel> load_stablelm(const io::GgufFile& f) {
  using namespace detail;
  LmConfig c = read_common_config(f);
  c.rope.mode = ops::RopeMode::RotateHalf;
  c.norm = NormKind::Layer;
  c.norm_eps = float(f.get_float(io::gguf::arch_key(c.arch, io::gguf::key::kLayerNormEps), 1e-5));
  c.act = ops::Activation::Silu;
  c.gated_ffn = true;
  c.validate();
  LmWeights w;
  w.token_embd = required(f, tn::kTokenEmbd, {c.n_vocab, c.n_embd});
  for (int i = 0; i < int(c.n_layer); ++i) {
    LayerWeights L;
    L.attn_norm = required(f, name(tn::kAttnNorm, i), {c.n_embd});
    L.attn_norm_b = required(f, name(tn::kAttnNormBias, i), {c.n_embd});
    load_attention(f, c, i, L);
    L.ffn_norm = required(f, name(tn::kFfnNorm, i), {c.n_embd});
    L.ffn_norm_b = required(f, name(tn::kFfnNormBias, i), {c.n_embd});
    load_gated_ffn(f, c, i, L);
    w.layers.push_back(std::move(L));
  }
  load_output(f, c, w, true);
  return std::make_unique<LanguageModel>(std::move(c), std::move(w));
}

}  // namespace ocellus::lm
