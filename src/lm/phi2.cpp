// Phi-2: LayerNorm with bias, fused q/k/v with bias, partial rotary (rotate-half over the first
// rope.dimension_count dims of each head), attention and MLP in parallel on the same normed
// input, GELU (tanh form) MLP with biases, output bias.
#include "family_common.h"

namespace ocellus::lm {

std::unique_ptr<LanguageModel> load_phi2(const io::GgufFile& f) {
  using namespace detail;
  LmConfig c = read_common_config(f);
  c.rope.mode = ops::RopeMode::RotateHalf;
  c.norm = NormKind::Layer;
  c.norm_eps = float(f.get_float(io::gguf::arch_key(c.arch, io::gguf::key::kLayerNormEps), 1e-5));
  c.act = ops::Activation::GeluTanh;
  c.gated_ffn = false;
  c.parallel_block = true;
  c.gelu_f16_table = true;  // GGUF models are computed as llama.cpp computes them
  c.prescale_q = true;
  c.validate();
  const int64_t d = c.n_embd, qkv = (c.n_head + 2 * c.n_head_kv) * c.head_dim;
  LmWeights w;
  w.token_embd = required(f, tn::kTokenEmbd, {c.n_vocab, d});
  for (int i = 0; i < int(c.n_layer); ++i) {
    LayerWeights L;
    L.attn_norm = required(f, name(tn::kAttnNorm, i), {d});
    L.attn_norm_b = required(f, name(tn::kAttnNormBias, i), {d});
    if (f.find_tensor(name(tn::kAttnQkv, i))) {
      L.wqkv = ops::PreparedWeight(required(f, name(tn::kAttnQkv, i), {qkv, d}));
      L.bqkv = required(f, name(tn::kAttnQkvBias, i), {qkv});
      L.wo = ops::PreparedWeight(required(f, name(tn::kAttnOutput, i), {d, d}));
      L.bo = optional_tensor(f, name(tn::kAttnOutputBias, i), {d});
    } else {
      load_attention(f, c, i, L);
    }
    L.w_up = ops::PreparedWeight(required(f, name(tn::kFfnUp, i), {c.n_ff, d}));
    L.b_up = optional_tensor(f, name(tn::kFfnUpBias, i), {c.n_ff});
    L.w_down = ops::PreparedWeight(required(f, name(tn::kFfnDown, i), {d, c.n_ff}));
    L.b_down = optional_tensor(f, name(tn::kFfnDownBias, i), {d});
    w.layers.push_back(std::move(L));
  }
  load_output(f, c, w, true);
  return std::make_unique<LanguageModel>(std::move(c), std::move(w));
}

}  // namespace ocellus::lm
