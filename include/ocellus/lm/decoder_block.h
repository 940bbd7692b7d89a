#pragma once
// The decoder block of every text family, written once for inference and training (see
// nn/forward.h): pre-norm (RMSNorm or LayerNorm), grouped-query attention with rope (the
// attention itself is the caller's: over the KV cache in inference, within each sequence in
// training), sequential or parallel (phi2) residuals, SwiGLU or a plain activation MLP.
#include <cmath>
#include <cstdint>
#include <vector>

#include "ocellus/lm/config.h"
#include "ocellus/nn/forward.h"

namespace ocellus::lm {

template <class W, class P>
struct DecoderLayerT {
  P attn_norm, attn_norm_b, ffn_norm, ffn_norm_b;   // [d] (b may be absent)
  W wq, wk, wv, wqkv, wo, w_gate, w_up, w_down;     // wqkv when fused (GGUF phi2)
  P bq, bk, bv, bqkv, bo, b_up, b_down;             // biases (absent: empty)
};

template <class W, class P>
struct LmWeightsT {
  P token_embd;                    // [n_vocab, n_embd] (inference: any dtype)
  std::vector<DecoderLayerT<W, P>> layers;
  P out_norm, out_norm_b;
  W output;                        // [n_vocab, n_embd]: token_embd when tied
  P output_b;
};

template <class F>
using DecoderLayer = DecoderLayerT<typename F::W, typename F::P>;
template <class F>
using DecoderWeights = LmWeightsT<typename F::W, typename F::P>;

template <class F>
typename F::V decoder_norm(const F& f, const LmConfig& c, const typename F::V& x, const typename F::P& w,
                           const typename F::P& b) {
  return c.norm == NormKind::Rms ? f.rms_norm(x, w, c.norm_eps) : f.layer_norm(x, w, b, c.norm_eps);
}

// A block's two halves around its attention, so that a caller can route rows through different
// weights on either side of one shared attention (LlamaFusion's modality-specific modules):
// attention_inputs gives the normed rows h and q, k (roped at pos), v [n, H or Hkv, hd];
// attention_outputs adds the output projection of att [n, H, hd] and the MLP to the residual x.
template <class F>
struct AttentionInputs {
  typename F::V h, q, k, v;
};

template <class F>
AttentionInputs<F> attention_inputs(const F& f, const LmConfig& c, const DecoderLayer<F>& L, const typename F::V& x,
                                    const std::vector<int32_t>& pos) {
  using V = typename F::V;
  const int64_t n = F::shape(x)[0], hd = c.head_dim, H = c.n_head, Hkv = c.n_head_kv;
  AttentionInputs<F> in;
  in.h = decoder_norm(f, c, x, L.attn_norm, L.attn_norm_b);
  V q, k, v;
  if (F::has(L.wqkv)) {
    const V qkv = f.linear(in.h, L.wqkv, L.bqkv);  // [n, (H + 2 Hkv) hd]
    q = f.slice(qkv, 1, 0, H * hd), k = f.slice(qkv, 1, H * hd, (H + Hkv) * hd);
    v = f.slice(qkv, 1, (H + Hkv) * hd, (H + 2 * Hkv) * hd);
  } else {
    std::vector<V> qkv = f.linear_many(in.h, {{&L.wq, L.bq}, {&L.wk, L.bk}, {&L.wv, L.bv}});
    q = std::move(qkv[0]), k = std::move(qkv[1]), v = std::move(qkv[2]);
  }
  in.q = f.rope(f.reshape(q, {n, H, hd}), pos, c.rope);
  in.k = f.rope(f.reshape(k, {n, Hkv, hd}), pos, c.rope);
  in.v = f.reshape(v, {n, Hkv, hd});
  return in;
}

template <class F>
typename F::V attention_outputs(const F& f, const LmConfig& c, const DecoderLayer<F>& L, const typename F::V& x,
                                const typename F::V& h, const typename F::V& att) {
  using V = typename F::V;
  const V a = f.linear(f.reshape(att, {F::shape(x)[0], c.n_head * c.head_dim}), L.wo, L.bo);
  const V xa = f.add(x, a);
  const V ffn_in = c.parallel_block ? h : decoder_norm(f, c, xa, L.ffn_norm, L.ffn_norm_b);
  const V m = c.gated_ffn ? f.swiglu_ffn(ffn_in, L.w_gate, L.w_up, L.b_up) : f.act(c.act, f.linear(ffn_in, L.w_up, L.b_up));
  return f.add(xa, f.linear(m, L.w_down, L.b_down));
}

// One block over rows x [n, n_embd] at positions pos. attend(q [n, H, hd] roped, k [n, Hkv, hd]
// roped, v [n, Hkv, hd]) -> [n, H, hd] is the attention.
template <class F, class Attend>
typename F::V decoder_layer(const F& f, const LmConfig& c, const DecoderLayer<F>& L, const typename F::V& x,
                            const std::vector<int32_t>& pos, Attend&& attend) {
  const AttentionInputs<F> in = attention_inputs(f, c, L, x, pos);
  return attention_outputs(f, c, L, x, in.h, attend(in.q, in.k, in.v));
}

// The final norm and the output head over rows x [n, n_embd] -> logits [n, n_vocab].
template <class F>
typename F::V decoder_head(const F& f, const LmConfig& c, const DecoderWeights<F>& w, const typename F::V& x) {
  return f.linear(decoder_norm(f, c, x, w.out_norm, w.out_norm_b), w.output, w.output_b);
}

}  // namespace ocellus::lm
