// Feature-map ops (conv2d, group norm, up-sampling) and the diffusion pieces (timestep
// embedding, MSE): each fast op against its naive reference, its backward against finite
// differences, and a chain of them (a U-Net's ResNet step down and up) against PyTorch.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "gradcheck.h"
#include "ocellus/autograd/autograd.h"
#include "ocellus/core/error.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/ops/diffusion.h"
#include "ocellus/ops/elementwise.h"
#include "ocellus/ops/feature_map.h"
#include "testutil.h"
#include "torch_ref.h"

using namespace ocellus;
using namespace ocellus::test;
namespace O = ocellus::ops;

namespace {

Tensor zeros_like(const Tensor& t) { return Tensor::zeros(t.shape()); }

struct ConvCase {
  int64_t k, stride, pad;
};

}  // namespace

TEST(FeatureMapOps, Conv2dMatchesNaiveAndGradients) {
  // 3x3 same-size, 3x3 stride 2 (a U-Net's down-sampler), 1x1 (the skip projection), 4x4 stride 2.
  for (const ConvCase c : {ConvCase{3, 1, 1}, ConvCase{3, 2, 1}, ConvCase{1, 1, 0}, ConvCase{4, 2, 1}}) {
    SCOPED_TRACE(testing::Message() << "k " << c.k << " stride " << c.stride << " pad " << c.pad);
    const Tensor x = randn({2, 7, 6, 5}, 1), w = randn({4, c.k, c.k, 5}, 2, 0.3f), b = randn({4}, 3);
    const Tensor y = O::conv2d(noncontiguous_copy(x), w, &b, c.stride, c.pad);
    const int64_t ho = (7 + 2 * c.pad - c.k) / c.stride + 1, wo = (6 + 2 * c.pad - c.k) / c.stride + 1;
    ASSERT_EQ(y.shape(), Shape({2, ho, wo, 4}));
    EXPECT_LE(rel_err(y, O::ref::conv2d(x, w, &b, c.stride, c.pad)), 4e-7);  // worst 8.1e-08
    gradcheck("conv2d", {x, w, b}, [&](auto& in) { return O::conv2d(in[0], in[1], &in[2], c.stride, c.pad); },
              [&](auto& in, const Tensor& g) {
                Tensor dx = zeros_like(in[0]), dw = zeros_like(in[1]), db = zeros_like(in[2]);
                O::conv2d_backward(in[0], in[1], g, c.stride, c.pad, &dx, &dw, &db);
                Tensor dx_r = zeros_like(in[0]), dw_r = zeros_like(in[1]), db_r = zeros_like(in[2]);
                O::ref::conv2d_backward(in[0], in[1], g, c.stride, c.pad, &dx_r, &dw_r, &db_r);
                EXPECT_LE(rel_err(dx, dx_r), 4e-7);   // worst 8.0e-08
                EXPECT_LE(rel_err(dw, dw_r), 8e-7);   // worst 1.7e-07
                EXPECT_LE(rel_err(db, db_r), 1.5e-6);  // worst 3.0e-07 (f32 sums of 84 rows)
                return std::vector<Tensor>{dx, dw, db};
              });
  }
  // One output by hand: (0, 0) of a 3x3 padded convolution sees the 2x2 corner.
  const Tensor x = randn({1, 3, 3, 2}, 4), w = randn({1, 3, 3, 2}, 5);
  float want = 0;
  for (int ky = 1; ky < 3; ++ky)
    for (int kx = 1; kx < 3; ++kx)
      for (int c = 0; c < 2; ++c) want += w.at({0, ky, kx, c}) * x.at({0, ky - 1, kx - 1, c});
  EXPECT_NEAR(O::conv2d(x, w, nullptr, 1, 1).at({0, 0, 0, 0}), want, 1e-5);
  // Gradients accumulate into what is there.
  const Tensor dy = randn({1, 3, 3, 1}, 6);
  Tensor dx1 = zeros_like(x), dx2 = Tensor::full(x.shape(), 1.0f);
  O::conv2d_backward(x, w, dy, 1, 1, &dx1, nullptr, nullptr);
  O::conv2d_backward(x, w, dy, 1, 1, &dx2, nullptr, nullptr);
  EXPECT_LE(max_abs_diff(O::add(dx1, Tensor::full(x.shape(), 1.0f)), dx2), 2e-6);  // worst 7.2e-07 (values near 1-4)
  EXPECT_THROW(O::conv2d(randn({3, 3, 2}, 1), w, nullptr, 1, 1), Error);     // not [B, H, W, C]
  EXPECT_THROW(O::conv2d(x, randn({1, 3, 3, 3}, 1), nullptr, 1, 1), Error);  // channels differ
  EXPECT_THROW(O::conv2d(x, w, nullptr, 0, 1), Error);                       // stride 0
  EXPECT_THROW(O::conv2d(randn({1, 1, 1, 2}, 1), w, nullptr, 1, 0), Error);  // kernel larger than the image
  const Tensor b2 = randn({2}, 1);
  EXPECT_THROW(O::conv2d(x, w, &b2, 1, 1), Error);  // bias of 2 for 1 output
}

TEST(FeatureMapOps, GroupNormMatchesNaiveAndGradients) {
  const Tensor x = randn({2, 4, 3, 8}, 1, 2.0f), w = randn({8}, 2), b = randn({8}, 3);
  const Tensor y = O::group_norm(noncontiguous_copy(x), w, b, 4, 1e-5f);
  EXPECT_LE(rel_err(y, O::ref::group_norm(x, w, b, 4, 1e-5f)), 3e-7);  // worst 5.6e-08
  // With w = 1, b = 0, each (image, group) has mean 0 and variance 1 (up to eps).
  const Tensor n = O::group_norm(x, Tensor::full({8}, 1.0f), Tensor::zeros({8}), 2, 1e-6f);
  double s = 0, q = 0;
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t c = 4; c < 8; ++c) s += n.at({1, i, j, c}), q += double(n.at({1, i, j, c})) * n.at({1, i, j, c});
  EXPECT_NEAR(s / 48, 0.0, 1e-6);
  EXPECT_NEAR(q / 48, 1.0, 1e-5);
  for (int64_t groups : {1, 4, 8}) {
    gradcheck("group_norm", {x, w, b}, [&](auto& in) { return O::group_norm(in[0], in[1], in[2], groups, 1e-5f); },
              [&](auto& in, const Tensor& g) {
                Tensor dx = zeros_like(in[0]), dw = zeros_like(in[1]), db = zeros_like(in[2]);
                O::group_norm_backward(in[0], in[1], groups, 1e-5f, g, &dx, &dw, &db);
                Tensor dx_r = zeros_like(in[0]), dw_r = zeros_like(in[1]), db_r = zeros_like(in[2]);
                O::ref::group_norm_backward(in[0], in[1], groups, 1e-5f, g, &dx_r, &dw_r, &db_r);
                // Both sum in double: equal here but for the last rounding.
                EXPECT_LE(rel_err(dx, dx_r), 1e-7);
                EXPECT_LE(rel_err(dw, dw_r), 1e-7);
                EXPECT_LE(rel_err(db, db_r), 1e-7);
                return std::vector<Tensor>{dx, dw, db};
              });
  }
  EXPECT_THROW(O::group_norm(x, w, b, 3, 1e-5f), Error);                   // 3 groups of 8 channels
  EXPECT_THROW(O::group_norm(x, randn({4}, 1), b, 4, 1e-5f), Error);       // weight of 4
  EXPECT_THROW(O::group_norm(x, w, b, 4, 0.0f), Error);                    // eps 0
}

TEST(FeatureMapOps, Upsample2xMatchesNaiveAndGradients) {
  const Tensor x = randn({2, 3, 4, 5}, 1);
  const Tensor y = O::upsample2x(noncontiguous_copy(x));
  ASSERT_EQ(y.shape(), Shape({2, 6, 8, 5}));
  EXPECT_EQ(max_abs_diff(y, O::ref::upsample2x(x)), 0.0);
  EXPECT_EQ(y.at({1, 5, 3, 2}), x.at({1, 2, 1, 2}));
  gradcheck("upsample2x", {x}, [](auto& in) { return O::upsample2x(in[0]); },
            [](auto& in, const Tensor& g) {
              Tensor d = zeros_like(in[0]), d_r = zeros_like(in[0]);
              O::upsample2x_backward(g, &d);
              O::ref::upsample2x_backward(g, &d_r);
              EXPECT_LE(rel_err(d, d_r), 2e-7);  // worst 4.3e-08 (four terms summed in another order)
              return std::vector<Tensor>{d};
            });
  EXPECT_THROW(O::upsample2x(randn({3, 4, 5}, 1)), Error);
}

TEST(DiffusionOps, TimestepEmbeddingAndMse) {
  const std::vector<float> t = {0.0f, 1.0f, 17.0f, 999.0f};
  const Tensor e = O::timestep_embedding(t, 16);
  ASSERT_EQ(e.shape(), Shape({4, 16}));
  // f32 arguments up to 999 (an f32 step there is 6e-5), as diffusers computes them: worst 8.6e-06.
  EXPECT_LE(max_abs_diff(e, O::ref::timestep_embedding(t, 16)), 3e-5);
  EXPECT_EQ(e.at({0, 3}), 1.0f);   // cos 0
  EXPECT_EQ(e.at({0, 11}), 0.0f);  // sin 0
  EXPECT_NEAR(e.at({2, 0}), std::cos(17.0f), 1e-6);  // frequency 1 first
  EXPECT_NEAR(e.at({2, 8}), std::sin(17.0f), 1e-6);
  EXPECT_THROW(O::timestep_embedding(t, 7), Error);
  EXPECT_THROW(O::timestep_embedding({}, 8), Error);

  const Tensor p = randn({3, 5, 2}, 1), q = randn({3, 5, 2}, 2);
  EXPECT_NEAR(O::mse(noncontiguous_copy(p), q), O::ref::mse(p, q), 1e-6);
  gradcheck("mse", {p, q}, [](auto& in) { return Tensor::full({1}, O::mse(in[0], in[1])); },
            [](auto& in, const Tensor& g) {
              Tensor dp = zeros_like(in[0]), dq = zeros_like(in[1]), dp_r = zeros_like(in[0]), dq_r = zeros_like(in[1]);
              O::mse_backward(in[0], in[1], g.at({0}), &dp, &dq);
              O::ref::mse_backward(in[0], in[1], g.at({0}), &dp_r, &dq_r);
              EXPECT_LE(rel_err(dp, dp_r), 3e-7);  // worst 5.8e-08
              EXPECT_LE(rel_err(dq, dq_r), 3e-7);
              return std::vector<Tensor>{dp, dq};
            });
  EXPECT_THROW(O::mse(p, randn({3, 5}, 1)), Error);
}

// A U-Net's step down and up: conv 3x3 -> group norm -> SiLU -> conv 3x3 stride 2 -> up-sample ->
// conv 1x1, then the MSE against a target; the loss and every gradient against PyTorch's
// (float64, the exact values).
TEST(FeatureMapOps, DownUpChainMatchesPyTorch) {
  const std::vector<std::pair<std::string, Tensor>> in = {
      {"x", randn({2, 8, 6, 3}, 1)},      {"w1", randn({8, 3, 3, 3}, 2, 0.3f)}, {"b1", randn({8}, 3, 0.1f)},
      {"gw", randn({8}, 4, 0.2f)},        {"gb", randn({8}, 5, 0.1f)},          {"w2", randn({6, 3, 3, 8}, 6, 0.2f)},
      {"b2", randn({6}, 7, 0.1f)},        {"w3", randn({3, 1, 1, 6}, 8, 0.3f)}, {"b3", randn({3}, 9, 0.1f)},
      {"target", randn({2, 8, 6, 3}, 10)}};
  std::vector<ag::Var> v;
  for (const auto& [name, t] : in) v.push_back(ag::leaf(t, true, name));
  ag::Var h = ag::conv2d(v[0], v[1], v[2], 1, 1);
  h = ag::activate(O::Activation::Silu, ag::group_norm(h, v[3], v[4], 4, 1e-5f));
  h = ag::conv2d(ag::upsample2x(ag::conv2d(h, v[5], v[6], 2, 1)), v[7], v[8], 1, 0);
  const ag::Var loss = ag::mse(h, v[9]);
  ag::Tape::current().backward(loss);

  const std::string dir = temp_path("feature_map_chain");
  std::filesystem::create_directories(dir);
  io::write_safetensors(dir + "/model.safetensors", in);
  const std::vector<float> ref = torch_ref({"feature_map_chain", dir, ""}, dir + "/out.f32");
  expect_step_matches(loss, v, ref, 1e-6);  // worst gradient 2.8e-07
}

TEST(DiffusionOps, GaussianPosteriorSampleAndKl) {
  const Tensor m = randn({3, 4, 2}, 1), lv = randn({3, 4, 2}, 2), e = randn({3, 4, 2}, 3);
  EXPECT_LE(rel_err(O::gaussian_sample(noncontiguous_copy(m), lv, e), O::ref::gaussian_sample(m, lv, e)), 3e-7);
  EXPECT_NEAR(O::gaussian_kl(m, noncontiguous_copy(lv)), O::ref::gaussian_kl(m, lv), 1e-6);
  // N(0, 1) itself is 0 away from N(0, 1); a log-variance past the clamp counts as the clamp.
  EXPECT_EQ(O::gaussian_kl(Tensor::zeros({5}), Tensor::zeros({5})), 0.0f);
  const Tensor big = Tensor::full({1}, 40.0f), at = Tensor::full({1}, O::kLogvarMax), one = Tensor::full({1}, 1.0f);
  EXPECT_EQ(O::gaussian_sample(Tensor::zeros({1}), big, one).at({0}), O::gaussian_sample(Tensor::zeros({1}), at, one).at({0}));
  gradcheck("gaussian_sample", {m, lv}, [&](auto& in) { return O::gaussian_sample(in[0], in[1], e); },
            [&](auto& in, const Tensor& g) {
              Tensor dm = zeros_like(in[0]), dl = zeros_like(in[1]), dm_r = zeros_like(in[0]), dl_r = zeros_like(in[1]);
              O::gaussian_sample_backward(in[1], e, g, &dm, &dl);
              O::ref::gaussian_sample_backward(in[1], e, g, &dm_r, &dl_r);
              EXPECT_EQ(max_abs_diff(dm, dm_r), 0.0);
              EXPECT_LE(rel_err(dl, dl_r), 3e-7);
              return std::vector<Tensor>{dm, dl};
            });
  gradcheck("gaussian_kl", {m, lv}, [](auto& in) { return Tensor::full({1}, O::gaussian_kl(in[0], in[1])); },
            [](auto& in, const Tensor& g) {
              Tensor dm = zeros_like(in[0]), dl = zeros_like(in[1]), dm_r = zeros_like(in[0]), dl_r = zeros_like(in[1]);
              O::gaussian_kl_backward(in[0], in[1], g.at({0}), &dm, &dl);
              O::ref::gaussian_kl_backward(in[0], in[1], g.at({0}), &dm_r, &dl_r);
              EXPECT_LE(rel_err(dm, dm_r), 3e-7);
              EXPECT_LE(rel_err(dl, dl_r), 3e-7);
              return std::vector<Tensor>{dm, dl};
            });
  // No gradient reaches a clamped log-variance.
  Tensor dl = Tensor::zeros({1});
  O::gaussian_kl_backward(Tensor::zeros({1}), big, 1.0f, nullptr, &dl);
  EXPECT_EQ(dl.at({0}), 0.0f);
  EXPECT_THROW(O::gaussian_sample(m, lv, randn({3, 4}, 1)), Error);
}
