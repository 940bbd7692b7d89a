// LlamaFusion's decoder layer (gen/fusion.h): text alone is the base block; image rows take their
// twin's weights and meet the text in one attention under the fusion mask.
#include <gtest/gtest.h>

#include <cmath>

#include "ocellus/core/error.h"
#include "ocellus/gen/fusion.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/lm/lm.h"
#include "ocellus/ops/elementwise.h"
#include "testutil.h"

using namespace ocellus;
using namespace ocellus::test;

namespace {

// A 1-layer llama of width 16 (4 heads, 2 kv heads) with new weights, and its twin: the same
// shapes, each weight the text one plus noise when `differ`.
struct Pair {
  lm::LmConfig c;
  std::vector<ag::Var> params, twin_params;
  lm::DecoderWeights<nn::Train> text, image;
};

Pair make_pair(bool differ) {
  io::HfTextConfig t;
  t.model_type = "llama", t.hidden_size = 16, t.intermediate_size = 24, t.num_hidden_layers = 1, t.num_attention_heads = 4;
  t.num_key_value_heads = 2, t.vocab_size = 32, t.max_position_embeddings = 64, t.norm_eps = 1e-5;
  Pair p;
  p.text = lm::load_hf_weights(t, nn::new_param_maker(p.params, 1), &p.c);
  p.image = lm::load_hf_weights(t, nn::new_param_maker(p.twin_params, 1), &p.c);
  for (size_t i = 0; i < p.params.size(); ++i) {
    p.params[i]->value = ops::add(p.params[i]->value, randn(p.params[i]->value.shape(), uint32_t(10 + i), 0.2f));
    p.twin_params[i]->value = differ ? ops::add(p.params[i]->value, randn(p.params[i]->value.shape(), uint32_t(90 + i), 0.2f))
                                     : p.params[i]->value.clone();
  }
  return p;
}

std::vector<int32_t> positions(int64_t n) {
  std::vector<int32_t> pos;
  for (int64_t i = 0; i < n; ++i) pos.push_back(int32_t(i));
  return pos;
}

}  // namespace

TEST(Fusion, MaskAndModalities) {
  const Tensor m = gen::fusion_mask(6, {{2, 4}});
  EXPECT_EQ(m.at({2, 3}), 0.0f);  // an image position sees the next one of its image
  EXPECT_EQ(m.at({1, 2}), -INFINITY);  // text does not see ahead
  EXPECT_EQ(m.at({3, 0}), 0.0f);  // the image sees the text before it
  EXPECT_EQ(m.at({4, 3}), 0.0f);  // text after the image sees it
  EXPECT_EQ(m.at({3, 4}), -INFINITY);
  EXPECT_THROW(gen::fusion_mask(6, {{2, 4}, {3, 5}}), Error);  // overlapping images
  EXPECT_THROW(gen::fusion_mask(6, {{5, 7}}), Error);
  const gen::Modalities mo = gen::Modalities::of({false, true, true, false});
  EXPECT_EQ(mo.text, (std::vector<int32_t>{0, 3}));
  EXPECT_EQ(mo.image, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(mo.order, (std::vector<int32_t>{0, 2, 3, 1}));
}

TEST(Fusion, TextAloneIsTheBaseBlockAndATwinEqualToTheTextIsTooUnderACausalMask) {
  const Pair p = make_pair(false);
  const nn::Train f;
  const int64_t n = 7;
  const Tensor x = randn({n, 16}, 3);
  const float scale = 1.0f / std::sqrt(float(p.c.head_dim));
  auto causal = [&](const ag::Var& q, const ag::Var& k, const ag::Var& v) { return f.attention_segments(q, k, v, scale, {0, n}, true); };
  const ag::Var base = lm::decoder_layer(f, p.c, p.text.layers[0], ag::constant(x), positions(n), causal);
  const std::vector<bool> none(size_t(n), false);
  const ag::Var text = gen::fusion_layer(f, p.c, p.text.layers[0], p.image.layers[0], gen::Modalities::of(none), ag::constant(x),
                                         positions(n), causal);
  EXPECT_EQ(max_abs_diff(text->value, base->value), 0.0);  // bit for bit: the base model untouched
  // Image rows through a twin with the text's weights, under a mask with no image span (plain
  // causal): the base block, up to the summation order of the smaller products.
  const std::vector<Tensor> masks = {gen::fusion_mask(n, {})};
  auto masked = [&](const ag::Var& q, const ag::Var& k, const ag::Var& v) { return f.attention_segments(q, k, v, scale, {0, n}, false, masks); };
  const ag::Var mixed = gen::fusion_layer(f, p.c, p.text.layers[0], p.image.layers[0],
                                          gen::Modalities::of({false, true, true, true, false, false, true}), ag::constant(x),
                                          positions(n), masked);
  EXPECT_LE(rel_err(mixed->value, base->value), 1e-6);
}

TEST(Fusion, ImageRowsTakeTheirTwinAndSeeTheirWholeImage) {
  const Pair p = make_pair(true);
  const nn::Train f;
  const int64_t n = 8;  // text 0-2, image 3-5, text 6-7
  const std::vector<bool> is_image = {false, false, false, true, true, true, false, false};
  const gen::Modalities mo = gen::Modalities::of(is_image);
  const std::vector<Tensor> masks = {gen::fusion_mask(n, {{3, 6}})};
  const float scale = 1.0f / std::sqrt(float(p.c.head_dim));
  auto attend = [&](const ag::Var& q, const ag::Var& k, const ag::Var& v) { return f.attention_segments(q, k, v, scale, {0, n}, false, masks); };
  auto run = [&](const Tensor& x) {
    return gen::fusion_layer(f, p.c, p.text.layers[0], p.image.layers[0], mo, ag::constant(x), positions(n), attend)->value;
  };
  const Tensor x = randn({n, 16}, 4);
  const Tensor y = run(x);
  // Changing the last image position changes the first one (bidirectional within the image) and
  // the text after the image, not the text before it.
  Tensor x2 = x.clone();
  for (int64_t j = 0; j < 16; ++j) x2.at({5, j}) += 1.0f;
  const Tensor y2 = run(x2);
  auto row_diff = [&](int64_t r) { return max_abs_diff(y.slice(0, r, r + 1), y2.slice(0, r, r + 1)); };
  EXPECT_EQ(row_diff(2), 0.0);
  EXPECT_GT(row_diff(3), 1e-4);
  EXPECT_GT(row_diff(7), 1e-4);
  // Text rows do not depend on the twin's weights except through the image rows' keys and values:
  // with no image row, the twin is not read at all (above); here an image row's output differs
  // from what the text weights would give it.
  const std::vector<bool> none(size_t(n), false);
  auto plain = [&](const ag::Var& q, const ag::Var& k, const ag::Var& v) { return f.attention_segments(q, k, v, scale, {0, n}, false, masks); };
  const Tensor with_text_weights =
      gen::fusion_layer(f, p.c, p.text.layers[0], p.image.layers[0], gen::Modalities::of(none), ag::constant(x), positions(n), plain)->value;
  EXPECT_GT(max_abs_diff(y.slice(0, 4, 5), with_text_weights.slice(0, 4, 5)), 1e-4);
  EXPECT_EQ(max_abs_diff(y.slice(0, 0, 3), with_text_weights.slice(0, 0, 3)), 0.0);  // text before the image: same weights, same keys
}

TEST(Fusion, MaskedAttentionGradientsMatchFiniteDifferences) {
  // The training attention with a mask per sequence: L = mean(y · r); each input's gradient
  // against a central difference along a random direction.
  const int64_t n = 6;
  const Tensor r = randn({n, 2, 4}, 4);
  const std::vector<Tensor> masks = {gen::fusion_mask(3, {{1, 3}}), gen::fusion_mask(3, {})};
  auto loss = [&](const std::vector<ag::Var>& in) {
    ops::AttentionParams p;
    p.scale = 0.5f;
    const ag::Var y = ag::attention_segments(in[0], in[1], in[2], p, {0, 3, 6}, masks);
    return ag::reshape(ag::segment_mean(ag::reshape(ag::mul(y, ag::constant(r)), {n * 8, 1}), {0, n * 8}), {1});
  };
  const std::vector<Tensor> x0 = {randn({n, 2, 4}, 1), randn({n, 2, 4}, 2), randn({n, 2, 4}, 3)};
  std::vector<ag::Var> in;
  for (const Tensor& t : x0) in.push_back(ag::leaf(t.clone(), true));
  ag::Tape::current().backward(loss(in));
  const float eps = 1e-2f;
  for (size_t w = 0; w < 3; ++w) {
    const Tensor dir = randn(x0[w].shape(), uint32_t(20 + w));
    auto at = [&](float s) {
      const ag::NoGrad no_grad;
      std::vector<ag::Var> moved;
      for (size_t k = 0; k < 3; ++k) moved.push_back(ag::constant(k == w ? ops::add(x0[k], ops::scale(dir, s)) : x0[k]));
      return double(loss(moved)->value.at({0}));
    };
    const double num = (at(eps) - at(-eps)) / (2.0 * eps);
    double ana = 0;
    for (int64_t i = 0; i < dir.numel(); ++i) ana += double(in[w]->grad.data<float>()[i]) * dir.data<float>()[i];
    EXPECT_NEAR(ana, num, 1e-4 + 1e-2 * std::fabs(num)) << "input " << w;
  }
}
