#pragma once
// LlamaFusion's decoder (Shi et al. 2024, "LlamaFusion: Adapting Pretrained Language Models for
// Multimodal Generation"): every layer of a text language model (frozen) gets a twin of the same
// shapes for image positions. Each row goes through its modality's norms, q / k / v projections,
// output projection and MLP; the rows of both modalities meet in one attention. Text attends
// causally; the positions of one image see each other in both directions and the text before
// them. Written over the forward context with the decoder block's two halves
// (lm/decoder_block.h), so that text alone runs the base model's block exactly.
#include <cstdint>
#include <utility>
#include <vector>

#include "ocellus/lm/decoder_block.h"

namespace ocellus::gen {

// The rows of a sequence by modality, and the way back to sequence order.
struct Modalities {
  std::vector<int32_t> text, image;  // row indices, ascending
  std::vector<int32_t> order;        // sequence row i is row order[i] of [text rows; image rows]
  // is_image[i]: whether row i is an image position.
  static Modalities of(const std::vector<bool>& is_image);
};

// The additive attention mask [n, n] of a sequence of n rows whose image positions are the
// spans [first, last) given: 0 where row i may see row j (j <= i, or both in one span), -inf
// elsewhere.
Tensor fusion_mask(int64_t n, const std::vector<std::pair<int64_t, int64_t>>& image_spans);

// One layer over rows x [n, d] at positions pos: text rows through `text`, image rows through
// `image`, one attention (attend as in lm::decoder_layer). With no image rows, lm::decoder_layer.
template <class F, class Attend>
typename F::V fusion_layer(const F& f, const lm::LmConfig& c, const lm::DecoderLayer<F>& text, const lm::DecoderLayer<F>& image,
                           const Modalities& m, const typename F::V& x, const std::vector<int32_t>& pos, Attend&& attend) {
  using V = typename F::V;
  if (m.image.empty()) return lm::decoder_layer(f, c, text, x, pos, attend);
  auto pick = [](const std::vector<int32_t>& p, const std::vector<int32_t>& rows) {
    std::vector<int32_t> out;
    for (int32_t r : rows) out.push_back(p[size_t(r)]);
    return out;
  };
  // Rows of [n, a, b] tensors in another order: gathered as [n, a·b].
  auto gather = [&](const V& t, const std::vector<int32_t>& rows) {
    const Shape& s = F::shape(t);
    const int64_t w = s.numel() / s[0];
    return f.reshape(f.rows(f.reshape(t, {s[0], w}), rows), {int64_t(rows.size()), s[1], s[2]});
  };
  auto merge = [&](const V& a, const V& b) { return gather(f.concat({a, b}, 0), m.order); };  // back to sequence order
  const V xt = f.rows(x, m.text), xi = f.rows(x, m.image);
  const lm::AttentionInputs<F> t = lm::attention_inputs(f, c, text, xt, pick(pos, m.text));
  const lm::AttentionInputs<F> i = lm::attention_inputs(f, c, image, xi, pick(pos, m.image));
  const V att = attend(merge(t.q, i.q), merge(t.k, i.k), merge(t.v, i.v));  // [n, H, hd]
  const V ot = lm::attention_outputs(f, c, text, xt, t.h, gather(att, m.text));
  const V oi = lm::attention_outputs(f, c, image, xi, i.h, gather(att, m.image));
  return f.rows(f.concat({ot, oi}, 0), m.order);
}

}  // namespace ocellus::gen
