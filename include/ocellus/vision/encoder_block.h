#pragma once
// The pre-LayerNorm transformer encoder block, written once for inference and training (see
// nn/forward.h): h + o(attn(ln1 h)), then h + fc2(act(fc1(ln2 h))), bidirectional attention
// within each segment of the stacked rows (one image, one caption). The ViT towers (CLIP,
// SigLIP), SigLIP's text tower and Llama 3-V's attention-block connector are stacks of it.
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ocellus/core/tensor.h"
#include "ocellus/nn/forward.h"
#include "ocellus/ops/elementwise.h"

namespace ocellus::vision {

template <class W, class P>
struct EncoderBlockT {
  P ln1_w, ln1_b, ln2_w, ln2_b;    // [d]
  W q, k, v, o, fc1, fc2;          // [d, d] x4, [ff, d], [d, ff]
  P q_b, k_b, v_b, o_b, fc1_b, fc2_b;  // biases (absent: empty)
};
template <class F>
using EncoderBlock = EncoderBlockT<typename F::W, typename F::P>;

struct EncoderParams {
  int64_t n_head = 1;
  ops::Activation act = ops::Activation::GeluTanh;
  float eps = 1e-5f;
};

// Tensor names of one block in a file layout (%d: the block index when the pattern has one).
struct EncoderBlockNames {
  std::string ln1_w, ln1_b, ln2_w, ln2_b, q, q_b, k, k_b, v, v_b, o, o_b, fc1, fc1_b, fc2, fc2_b;
};

// Block i (width d, MLP width ff) under names n, read by the maker (biases optional).
template <class F>
EncoderBlock<F> load_encoder_block(const nn::Maker<F>& mk, const EncoderBlockNames& n, int64_t i, int64_t d, int64_t ff);

template <class F>
typename F::V encoder_block(const F& f, const EncoderBlock<F>& b, const typename F::V& h, const EncoderParams& p,
                            const std::vector<int64_t>& starts) {
  const int64_t n = F::shape(h)[0], d = F::shape(h)[1], hd = d / p.n_head;
  const auto x = f.layer_norm(h, b.ln1_w, b.ln1_b, p.eps);  // [n, d]
  auto heads = [&](const typename F::V& t) { return f.reshape(t, {n, p.n_head, hd}); };
  const auto q = f.linear(x, b.q, b.q_b), k = f.linear(x, b.k, b.k_b), v = f.linear(x, b.v, b.v_b);
  const auto a = f.attention_segments(heads(q), heads(k), heads(v), 1.0f / std::sqrt(float(hd)), starts);  // [n, H, hd]
  const auto h1 = f.add(h, f.linear(f.reshape(a, {n, d}), b.o, b.o_b));
  const auto f1 = f.act(p.act, f.linear(f.layer_norm(h1, b.ln2_w, b.ln2_b, p.eps), b.fc1, b.fc1_b));  // [n, ff]
  return f.add(h1, f.linear(f1, b.fc2, b.fc2_b));
}

}  // namespace ocellus::vision
