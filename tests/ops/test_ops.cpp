// Each op: the fast kernel against its naive reference on random, non-contiguous and extreme
// inputs, and each backward against finite differences.
//
// Bounds against the references are regression bounds: 10x the worst error achieved over the
// generic / avx2 / avx512 kernel tables (the suite run with OCELLUS_ISA=generic|avx2|avx512) on
// an Intel Xeon (AVX-512 VNNI), that worst beside each ("exact": equal on every table; where 10x
// would pass the earlier bound, that bound is kept). The same values on every table: these ops'
// arithmetic is the same scalar code, or exp within 2 ulp.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "gradcheck.h"
#include "ocellus/core/error.h"
#include "ocellus/ops/attention.h"
#include "ocellus/ops/elementwise.h"
#include "ocellus/ops/embed.h"
#include "ocellus/ops/grid.h"
#include "ocellus/ops/loss.h"
#include "ocellus/ops/matmul.h"
#include "ocellus/ops/norm.h"
#include "ocellus/ops/rope.h"
#include "ocellus/ops/shape.h"
#include "ocellus/ops/softmax.h"
#include "testutil.h"

using namespace ocellus;
using namespace ocellus::test;
namespace O = ocellus::ops;

namespace {
Tensor zeros_like(const Tensor& t) { return Tensor::zeros(t.shape()); }
}  // namespace

// ---- element-wise ---------------------------------------------------------------------------

TEST(Elementwise, BroadcastingMatchesNaive) {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{4, 5}, {4, 5}}, {{2, 3, 8}, {8}}, {{2, 3, 8}, {3, 1}}, {{1, 3, 1}, {2, 1, 7}}, {{6}, {1}}};
  for (const auto& [sa, sb] : cases) {
    Tensor a = randn(sa, 1), b = randn(sb, 2);
    EXPECT_LE(rel_err(O::add(a, b), O::ref::add(a, b)), 0.0) << sa.str() << sb.str();  // exact on every table
    EXPECT_LE(rel_err(O::mul(a, b), O::ref::mul(a, b)), 0.0) << sa.str() << sb.str();  // exact on every table
  }
  Tensor a = randn({5, 7}, 3), b = randn({5, 7}, 4);
  EXPECT_LE(rel_err(O::add(noncontiguous_copy(a), b), O::ref::add(a, b)), 0.0);  // exact on every table
  EXPECT_LE(rel_err(O::scale(noncontiguous_copy(a), -2.5f), O::ref::scale(a, -2.5f)), 0.0);  // exact on every table
  EXPECT_EQ(O::add(randn({2, 3, 8}, 1), randn({3, 1}, 2)).shape(), Shape({2, 3, 8}));
  EXPECT_THROW(O::add(randn({2, 3}, 1), randn({4}, 2)), Error);
}

TEST(Elementwise, BroadcastBackward) {
  Tensor a = randn({2, 3, 4}, 1), b = randn({3, 1}, 2);
  Tensor dy = randn({2, 3, 4}, 3);
  Tensor da = zeros_like(a), db = zeros_like(b), da_r = zeros_like(a), db_r = zeros_like(b);
  O::mul_backward(a, b, dy, &da, &db);
  O::ref::mul_backward(a, b, dy, &da_r, &db_r);
  EXPECT_LE(rel_err(da, da_r), 0.0);  // exact on every table
  EXPECT_LE(rel_err(db, db_r), 0.0);  // exact on every table
  gradcheck("add", {a, b}, [](auto& in) { return O::add(in[0], in[1]); },
            [](auto& in, const Tensor& g) {
              Tensor da = zeros_like(in[0]), db = zeros_like(in[1]);
              O::add_backward(g, &da, &db);
              return std::vector<Tensor>{da, db};
            });
  gradcheck("mul", {a, b}, [](auto& in) { return O::mul(in[0], in[1]); },
            [](auto& in, const Tensor& g) {
              Tensor da = zeros_like(in[0]), db = zeros_like(in[1]);
              O::mul_backward(in[0], in[1], g, &da, &db);
              return std::vector<Tensor>{da, db};
            });
  gradcheck("scale", {a}, [](auto& in) { return O::scale(in[0], 0.3f); },
            [](auto& in, const Tensor& g) {
              Tensor da = zeros_like(in[0]);
              O::scale_backward(g, 0.3f, &da);
              return std::vector<Tensor>{da};
            });
}

TEST(Elementwise, ActivationsMatchNaiveAndGradients) {
  Tensor x = randn({7, 33}, 5, 2.0f);
  float* p = x.data<float>();
  p[0] = 40.0f, p[1] = -40.0f, p[2] = 0.0f, p[3] = 1e-8f;  // saturation and zero
  for (O::Activation f : {O::Activation::GeluErf, O::Activation::GeluTanh, O::Activation::QuickGelu,
                          O::Activation::Silu}) {
    EXPECT_LE(max_abs_diff(O::activate(f, x), O::ref::activate(f, x)), 2e-6) << O::activation_name(f);  // worst 4.77e-07; 10x would pass the earlier 2e-6, kept
    EXPECT_LE(rel_err(O::activate(f, noncontiguous_copy(x)), O::ref::activate(f, x)), 2.5e-7);  // worst 2.47e-08
    Tensor dy = randn(x.shape(), 6), dx = zeros_like(x), dx_r = zeros_like(x);
    O::activate_backward(f, x, dy, &dx);
    O::ref::activate_backward(f, x, dy, &dx_r);
    EXPECT_LE(max_abs_diff(dx, dx_r), 4.8e-6) << O::activation_name(f);  // worst 4.77e-07
    gradcheck(O::activation_name(f), {randn({3, 11}, 7, 1.5f)},
              [f](auto& in) { return O::activate(f, in[0]); },
              [f](auto& in, const Tensor& g) {
                Tensor dx = zeros_like(in[0]);
                O::activate_backward(f, in[0], g, &dx);
                return std::vector<Tensor>{dx};
              });
  }
  // Known values: GELU(1) = 0.8413447, tanh form 0.8411920, quick 0.8457, SiLU(1) = 0.7310586
  Tensor one = Tensor::full({1}, 1.0f);
  EXPECT_NEAR(O::activate(O::Activation::GeluErf, one).to_vector()[0], 0.8413447f, 1e-6);
  EXPECT_NEAR(O::activate(O::Activation::GeluTanh, one).to_vector()[0], 0.8411920f, 1e-6);
  EXPECT_NEAR(O::activate(O::Activation::QuickGelu, one).to_vector()[0], 0.8457957f, 1e-6);
  EXPECT_NEAR(O::activate(O::Activation::Silu, one).to_vector()[0], 0.7310586f, 1e-6);
}

TEST(Elementwise, SwiGLU) {
  Tensor g = randn({5, 16}, 1), u = randn({5, 16}, 2);
  EXPECT_LE(rel_err(O::swiglu(g, noncontiguous_copy(u)), O::ref::swiglu(g, u)), 9.5e-7);  // worst 9.47e-08
  gradcheck("swiglu", {g, u}, [](auto& in) { return O::swiglu(in[0], in[1]); },
            [](auto& in, const Tensor& dy) {
              Tensor dg = zeros_like(in[0]), du = zeros_like(in[1]);
              O::swiglu_backward(in[0], in[1], dy, &dg, &du);
              Tensor dg_r = zeros_like(in[0]), du_r = zeros_like(in[1]);
              O::ref::swiglu_backward(in[0], in[1], dy, &dg_r, &du_r);
              EXPECT_LE(rel_err(dg, dg_r), 6.9e-7);  // worst 6.88e-08
              EXPECT_LE(rel_err(du, du_r), 6.8e-7);  // worst 6.77e-08
              return std::vector<Tensor>{dg, du};
            });
  // Accumulation adds to what is there; overwrite ignores it (NaN included); one side alone.
  const Tensor dy = randn({5, 16}, 3);
  Tensor dg0 = zeros_like(g), du0 = zeros_like(u);
  O::swiglu_backward(g, u, dy, &dg0, &du0);
  Tensor dg1 = Tensor::full({5, 16}, 1.5f), du1 = Tensor::full({5, 16}, -2.0f);
  O::swiglu_backward(g, u, dy, &dg1, &du1);
  EXPECT_LE(rel_err(dg1, O::add(dg0, Tensor::full({5, 16}, 1.5f))), 0.0);  // exact on every table
  EXPECT_LE(rel_err(du1, O::add(du0, Tensor::full({5, 16}, -2.0f))), 0.0);  // exact on every table
  Tensor dg2 = Tensor::full({5, 16}, std::nanf("")), du2 = Tensor::full({5, 16}, std::nanf(""));
  O::swiglu_backward(g, u, dy, &dg2, &du2, true);
  EXPECT_EQ(dg2.to_vector(), dg0.to_vector());
  EXPECT_EQ(du2.to_vector(), du0.to_vector());
  Tensor dg3 = Tensor::full({5, 16}, std::nanf("")), du3 = zeros_like(u);
  O::swiglu_backward(g, u, dy, &dg3, nullptr, true);
  O::swiglu_backward(g, u, dy, nullptr, &du3);
  EXPECT_EQ(dg3.to_vector(), dg0.to_vector());
  EXPECT_EQ(du3.to_vector(), du0.to_vector());
}

// ---- matmul gradient ------------------------------------------------------------------------

TEST(MatmulGrad, FiniteDifferences) {
  gradcheck("matmul", {randn({3, 2, 8}, 1), randn({5, 8}, 2), randn({5}, 3)},
            [](auto& in) { return O::matmul(in[0], in[1], &in[2]); },
            [](auto& in, const Tensor& g) {
              Tensor dx = zeros_like(in[0]), dw = zeros_like(in[1]), db = zeros_like(in[2]);
              O::matmul_backward(in[0], in[1], g, &dx, &dw, &db);
              return std::vector<Tensor>{dx, dw, db};
            });
}

// ---- norms ----------------------------------------------------------------------------------

TEST(Norm, LayerNormMatchesNaive) {
  Tensor x = randn({6, 48}, 1, 3.0f), w = randn({48}, 2), b = randn({48}, 3);
  x.data<float>()[5] = 1e4f;  // an outlier row
  for (int r = 0; r < 48; ++r) x.data<float>()[48 + r] = 2.0f;  // constant row: var 0
  EXPECT_LE(rel_err(O::layer_norm(x, &w, &b, 1e-5f), O::ref::layer_norm(x, &w, &b, 1e-5f)), 2.8e-7);  // worst 2.8e-08
  EXPECT_LE(rel_err(O::layer_norm(noncontiguous_copy(x), nullptr, nullptr, 1e-6f),
                    O::ref::layer_norm(x, nullptr, nullptr, 1e-6f)), 1e-5);
}

TEST(Norm, LayerNormGgmlOrderMatchesNaive) {
  Tensor x = randn({6, 48}, 1, 3.0f), w = randn({48}, 2), b = randn({48}, 3);
  x.data<float>()[5] = 1e4f;
  for (int r = 0; r < 48; ++r) x.data<float>()[48 + r] = 2.0f;
  EXPECT_LE(rel_err(O::layer_norm_ggml_order(x, &w, &b, 1e-5f), O::ref::layer_norm(x, &w, &b, 1e-5f)), 2.8e-7);  // worst 2.8e-08
  EXPECT_LE(rel_err(O::layer_norm_ggml_order(noncontiguous_copy(x), nullptr, &b, 1e-6f),
                    O::ref::layer_norm(x, nullptr, &b, 1e-6f)), 1e-6);
}

TEST(Norm, LayerNormGradients) {
  gradcheck("layer_norm", {randn({4, 12}, 1), randn({12}, 2), randn({12}, 3)},
            [](auto& in) { return O::layer_norm(in[0], &in[1], &in[2], 1e-5f); },
            [](auto& in, const Tensor& g) {
              Tensor dx = zeros_like(in[0]), dw = zeros_like(in[1]), db = zeros_like(in[2]);
              O::layer_norm_backward(in[0], &in[1], g, 1e-5f, &dx, &dw, &db);
              Tensor dx_r = zeros_like(in[0]), dw_r = zeros_like(in[1]), db_r = zeros_like(in[2]);
              O::ref::layer_norm_backward(in[0], &in[1], g, 1e-5f, &dx_r, &dw_r, &db_r);
              EXPECT_LE(rel_err(dx, dx_r), 6.4e-7);  // worst 6.33e-08
              EXPECT_LE(rel_err(dw, dw_r), 8.5e-7);  // worst 8.47e-08
              EXPECT_LE(rel_err(db, db_r), 0.0);  // exact on every table
              return std::vector<Tensor>{dx, dw, db};
            });
}

TEST(Norm, RmsNormMatchesNaiveAndGradients) {
  Tensor x = randn({5, 64}, 4, 10.0f), w = randn({64}, 5);
  EXPECT_LE(rel_err(O::rms_norm(noncontiguous_copy(x), &w, 1e-6f), O::ref::rms_norm(x, &w, 1e-6f)), 6.5e-7);  // worst 6.49e-08
  Tensor z = Tensor::zeros({2, 64});  // all-zero rows stay finite through eps
  for (float v : O::rms_norm(z, &w, 1e-6f).to_vector()) EXPECT_EQ(v, 0.0f);
  gradcheck("rms_norm", {randn({4, 12}, 1), randn({12}, 2)},
            [](auto& in) { return O::rms_norm(in[0], &in[1], 1e-5f); },
            [](auto& in, const Tensor& g) {
              Tensor dx = zeros_like(in[0]), dw = zeros_like(in[1]);
              O::rms_norm_backward(in[0], &in[1], g, 1e-5f, &dx, &dw);
              Tensor dx_r = zeros_like(in[0]), dw_r = zeros_like(in[1]);
              O::ref::rms_norm_backward(in[0], &in[1], g, 1e-5f, &dx_r, &dw_r);
              EXPECT_LE(rel_err(dx, dx_r), 9.2e-7);  // worst 9.14e-08
              EXPECT_LE(rel_err(dw, dw_r), 9.6e-7);  // worst 9.56e-08
              return std::vector<Tensor>{dx, dw};
            });
}

// Rows wider than the 16 lanes the row sums run in (two full lane blocks and a tail of 8), with
// and without a weight: both backwards against the naive ones.
TEST(Norm, BackwardsMatchNaiveOnWideRows) {
  const Tensor x = randn({7, 40}, 6, 3.0f), w = randn({40}, 7), b = randn({40}, 8), g = randn({7, 40}, 9);
  for (const Tensor* wp : {&w, static_cast<const Tensor*>(nullptr)}) {
    Tensor dx = zeros_like(x), dw = zeros_like(w), db = zeros_like(b);
    Tensor dx_r = zeros_like(x), dw_r = zeros_like(w), db_r = zeros_like(b);
    O::layer_norm_backward(x, wp, g, 1e-5f, &dx, wp ? &dw : nullptr, &db);
    O::ref::layer_norm_backward(x, wp, g, 1e-5f, &dx_r, wp ? &dw_r : nullptr, &db_r);
    EXPECT_LE(rel_err(dx, dx_r), 7.9e-7) << "layer_norm, weight " << (wp != nullptr);  // worst 7.85e-08
    EXPECT_LE(rel_err(dw, dw_r), 7.3e-7);  // worst 7.26e-08
    EXPECT_LE(rel_err(db, db_r), 0.0);  // exact on every table
    Tensor rdx = zeros_like(x), rdw = zeros_like(w), rdx_r = zeros_like(x), rdw_r = zeros_like(w);
    O::rms_norm_backward(x, wp, g, 1e-5f, &rdx, wp ? &rdw : nullptr);
    O::ref::rms_norm_backward(x, wp, g, 1e-5f, &rdx_r, wp ? &rdw_r : nullptr);
    EXPECT_LE(rel_err(rdx, rdx_r), 6.5e-7) << "rms_norm, weight " << (wp != nullptr);  // worst 6.49e-08
    EXPECT_LE(rel_err(rdw, rdw_r), 7.7e-7);  // worst 7.63e-08
    EXPECT_LE(rel_err(O::rms_norm(x, wp, 1e-5f), O::ref::rms_norm(x, wp, 1e-5f)), 5.9e-7);  // worst 5.88e-08
    EXPECT_LE(rel_err(O::layer_norm(x, wp, &b, 1e-5f), O::ref::layer_norm(x, wp, &b, 1e-5f)), 5.5e-7);  // worst 5.5e-08
  }
}

// ---- rope -----------------------------------------------------------------------------------

TEST(Rope, BothLayoutsFullAndPartialMatchNaive) {
  const std::vector<int32_t> pos = {0, 1, 5, 100, 4095};
  Tensor x = randn({5, 3, 16}, 1);
  for (O::RopeMode mode : {O::RopeMode::Adjacent, O::RopeMode::RotateHalf})
    for (int64_t n_rot : {16, 8}) {
      O::RopeParams p{n_rot, 10000.0f, 1.0f, mode};
      EXPECT_LE(max_abs_diff(O::rope(x, pos, p), O::ref::rope(x, pos, p)), 2.4e-6)  // worst 2.38e-07
          << int(mode) << " n_rot " << n_rot;
      // position 0 is the identity; dims past n_rot pass through untouched
      Tensor y = O::rope(x, pos, p);
      for (int64_t j = 0; j < 16; ++j) EXPECT_EQ(y.at({0, 1, j}), x.at({0, 1, j}));
      for (int64_t j = n_rot; j < 16; ++j) EXPECT_EQ(y.at({3, 2, j}), x.at({3, 2, j}));
    }
}

// A batch of sequences repeats positions (0, 1, 2, ... each): the fast op then takes each
// position's angles from a table; every token must get what it gets alone, bit for bit, and
// the naive result, forward and backward, in both angle conventions.
TEST(Rope, RepeatedPositionsOfABatchEqualOneTokenAtATime) {
  std::vector<int32_t> pos;
  for (int len : {7, 3, 9, 9, 1, 5}) for (int i = 0; i < len; ++i) pos.push_back(i + 2);
  const int64_t n = int64_t(pos.size());
  Tensor x = randn({n, 2, 8}, 4), g = randn({n, 2, 8}, 5);
  for (O::RopeAngles angles : {O::RopeAngles::Ggml, O::RopeAngles::Exact}) {
    O::RopeParams p{8, 10000.0f, 1.0f, O::RopeMode::RotateHalf};
    p.angles = angles;
    Tensor y = O::rope(x, pos, p), dx = zeros_like(x), dx_r = zeros_like(x);
    O::rope_backward(g, pos, p, &dx);
    O::ref::rope_backward(g, pos, p, &dx_r);
    EXPECT_LE(max_abs_diff(y, O::ref::rope(x, pos, p)), 2.4e-6);  // worst 2.38e-07
    EXPECT_LE(max_abs_diff(dx, dx_r), 2.4e-6);  // worst 2.38e-07
    for (int64_t t = 0; t < n; ++t) {
      Tensor one = O::rope(x.slice(0, t, t + 1).contiguous(), {pos[t]}, p);
      Tensor d1 = zeros_like(one);
      O::rope_backward(g.slice(0, t, t + 1).contiguous(), {pos[t]}, p, &d1);
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t j = 0; j < 8; ++j) {
          ASSERT_EQ(y.at({t, h, j}), one.at({0, h, j})) << t;
          ASSERT_EQ(dx.at({t, h, j}), d1.at({0, h, j})) << t;
        }
    }
  }
}

TEST(Rope, LayoutsDifferAsDocumented) {
  // one head of 4 dims at position 1 with theta so that pair 0 turns by 1 rad
  Tensor x = Tensor::from_vector({1, 1, 4}, {1, 2, 3, 4});
  O::RopeParams adj{4, 10000.0f, 1.0f, O::RopeMode::Adjacent};
  O::RopeParams half{4, 10000.0f, 1.0f, O::RopeMode::RotateHalf};
  const float c = std::cos(1.0f), s = std::sin(1.0f);
  Tensor ya = O::rope(x, {1}, adj), yh = O::rope(x, {1}, half);
  EXPECT_NEAR(ya.at({0, 0, 0}), 1 * c - 2 * s, 1e-6);  // pair (0, 1)
  EXPECT_NEAR(ya.at({0, 0, 1}), 1 * s + 2 * c, 1e-6);
  EXPECT_NEAR(yh.at({0, 0, 0}), 1 * c - 3 * s, 1e-6);  // pair (0, 2)
  EXPECT_NEAR(yh.at({0, 0, 2}), 1 * s + 3 * c, 1e-6);
}

TEST(Rope, Gradients) {
  const std::vector<int32_t> pos = {3, 7};
  for (O::RopeMode mode : {O::RopeMode::Adjacent, O::RopeMode::RotateHalf}) {
    O::RopeParams p{4, 10000.0f, 1.0f, mode};
    gradcheck("rope", {randn({2, 2, 6}, 1)}, [&](auto& in) { return O::rope(in[0], pos, p); },
              [&](auto& in, const Tensor& g) {
                Tensor dx = zeros_like(in[0]), dx_r = zeros_like(in[0]);
                O::rope_backward(g, pos, p, &dx);
                O::ref::rope_backward(g, pos, p, &dx_r);
                EXPECT_LE(rel_err(dx, dx_r), 6.3e-7);  // worst 6.27e-08
                return std::vector<Tensor>{dx};
              });
  }
}

// ---- softmax --------------------------------------------------------------------------------

TEST(Softmax, MatchesNaiveOnExtremesAndGradients) {
  const float inf = std::numeric_limits<float>::infinity();
  Tensor x = randn({4, 37}, 1, 5.0f);
  x.data<float>()[0] = 1e4f;  // dominates its row
  for (int j = 0; j < 37; ++j) x.data<float>()[37 + j] = -inf;  // fully masked row -> zeros
  x.data<float>()[74] = -inf;
  Tensor y = O::softmax(x);
  EXPECT_LE(max_abs_diff(y, O::ref::softmax(x)), 6e-7);  // worst 5.96e-08
  EXPECT_LE(max_abs_diff(O::softmax(noncontiguous_copy(randn({6, 5}, 2))), O::ref::softmax(randn({6, 5}, 2))), 3e-7);  // worst 2.98e-08
  for (int j = 0; j < 37; ++j) EXPECT_EQ(y.at({1, j}), 0.0f);
  gradcheck("softmax", {randn({3, 7}, 3)}, [](auto& in) { return O::softmax(in[0]); },
            [](auto& in, const Tensor& g) {
              Tensor y = O::softmax(in[0]);
              Tensor dx = zeros_like(in[0]), dx_r = zeros_like(in[0]);
              O::softmax_backward(y, g, &dx);
              O::ref::softmax_backward(y, g, &dx_r);
              EXPECT_LE(rel_err(dx, dx_r), 8.5e-8);  // worst 8.45e-09
              return std::vector<Tensor>{dx};
            });
}

// ---- attention ------------------------------------------------------------------------------

TEST(Attention, MatchesNaiveAllMaskKindsAndGqa) {
  // 9 queries: the streaming form (decode-like); 70: the GEMM form in blocks of 64 (one partial).
  for (const int64_t n_q : {int64_t(9), int64_t(70)}) {
    const int64_t n_kv = 300, d = 16;  // n_kv spans several key blocks
    Tensor q = randn({n_q, 4, d}, 1), k = randn({n_kv, 2, d}, 2), v = randn({n_kv, 2, 8}, 3);
    Tensor mask = randn({n_q, n_kv}, 4);
    for (int64_t j = 0; j < n_kv; ++j) mask.at({2, j}) = -std::numeric_limits<float>::infinity();  // row 2 fully masked
    mask.at({3, 10}) = -std::numeric_limits<float>::infinity();
    const float scale = 1.0f / std::sqrt(float(d));
    const std::vector<O::AttentionParams> params = {
        {scale, false, nullptr}, {scale, true, nullptr}, {scale, false, &mask}, {scale, true, &mask}};
    for (size_t c = 0; c < params.size(); ++c) {
      Tensor lse, lse_r;
      Tensor out = O::attention(q, k, v, params[c], &lse);
      Tensor ref = O::ref::attention(q, k, v, params[c], &lse_r);
      EXPECT_LE(max_abs_diff(out, ref), 2.4e-6) << "case " << c << " n_q " << n_q;  // worst 2.38e-07
      // lse: compare finite entries; fully masked rows are -inf in both
      std::vector<float> a = lse.to_vector(), b = lse_r.to_vector();
      for (size_t i = 0; i < a.size(); ++i)
        if (std::isinf(b[i])) EXPECT_TRUE(std::isinf(a[i]) && a[i] < 0);
        else EXPECT_NEAR(a[i], b[i], 9.6e-6);  // worst 9.54e-07
    }
    // strided inputs
    Tensor qs = randn({4, n_q, d}, 5).transpose(0, 1);
    EXPECT_LE(max_abs_diff(O::attention(qs, k, v, params[1]), O::ref::attention(qs.contiguous(), k, v, params[1])), 1.7e-6);  // worst 1.64e-07
    EXPECT_THROW(O::attention(randn({2, 3, d}, 1), k, v, params[0]), Error);  // 3 heads over 2 kv heads
  }
  // causal with as many keys as queries: the first query sees one key
  Tensor q = randn({100, 2, 8}, 6), k = randn({100, 1, 8}, 7), v = randn({100, 1, 8}, 8);
  const O::AttentionParams pc{0.3f, true, nullptr};
  EXPECT_LE(max_abs_diff(O::attention(q, k, v, pc), O::ref::attention(q, k, v, pc)), 1.2e-6);  // worst 1.19e-07
}

TEST(Attention, BackwardMatchesNaiveBothForms) {
  // 9 queries: the streaming backward; 70: the GEMM form (blocks of 64, one partial). Masks with
  // a fully masked row, causal, GQA; gradients accumulate into what the tensors already hold.
  for (const int64_t n_q : {int64_t(9), int64_t(70)}) {
    const int64_t n_kv = 90, d = 16;
    Tensor q = randn({n_q, 4, d}, 11), k = randn({n_kv, 2, d}, 12), v = randn({n_kv, 2, 8}, 13);
    Tensor mask = randn({n_q, n_kv}, 14), g = randn({n_q, 4, 8}, 15);
    for (int64_t j = 0; j < n_kv; ++j) mask.at({2, j}) = -std::numeric_limits<float>::infinity();
    const float scale = 1.0f / std::sqrt(float(d));
    const std::vector<O::AttentionParams> params = {
        {scale, false, nullptr}, {scale, true, nullptr}, {scale, false, &mask}, {scale, true, &mask}};
    for (size_t c = 0; c < params.size(); ++c) {
      Tensor lse;
      const Tensor out = O::attention(q, k, v, params[c], &lse);
      Tensor dq = randn(q.shape(), 16), dk = randn(k.shape(), 17), dv = randn(v.shape(), 18);
      Tensor dq_r = dq.clone(), dk_r = dk.clone(), dv_r = dv.clone();
      O::attention_backward(q, k, v, out, lse, g, params[c], &dq, &dk, &dv);
      O::ref::attention_backward(q, k, v, out, lse, g, params[c], &dq_r, &dk_r, &dv_r);
      EXPECT_LE(rel_err(dq, dq_r), 2.6e-6) << "case " << c << " n_q " << n_q;  // worst 2.55e-07
      EXPECT_LE(rel_err(dk, dk_r), 3.1e-6) << "case " << c << " n_q " << n_q;  // worst 3.02e-07
      EXPECT_LE(rel_err(dv, dv_r), 3.2e-6) << "case " << c << " n_q " << n_q;  // worst 3.18e-07
    }
  }
}

TEST(Attention, GgmlOrderMatchesNaive) {
  // 37 keys: two full 16-wide exp blocks and a 5-key tail; 4 query heads over 2 kv heads.
  Tensor q = randn({11, 4, 12}, 1), k = randn({37, 2, 12}, 2), v = randn({37, 2, 8}, 3);
  const float scale = 1.0f / std::sqrt(12.0f);
  const O::AttentionParams p{scale, false, nullptr};
  EXPECT_LE(max_abs_diff(O::attention_ggml_order(q, k, v, scale), O::ref::attention(q, k, v, p)), 3e-6);  // worst 2.98e-07
  // large scores stay finite (the max is subtracted before exp)
  const Tensor big = O::attention_ggml_order(randn({3, 1, 8}, 4, 40.0f), randn({40, 1, 8}, 5, 40.0f), randn({40, 1, 8}, 6), 1.0f);
  for (float x : big.to_vector()) ASSERT_TRUE(std::isfinite(x));
}

TEST(Attention, GgmlExpIsExpWithinItsErrorBound) {
  EXPECT_EQ(O::expf_ggml(0.0f), 1.0f);
  EXPECT_EQ(O::expf_ggml(-200.0f), 0.0f);
  double worst = 0;
  for (int i = 0; i <= 200000; ++i) {
    const float x = -87.0f + 95.0f * float(i) / 200000.0f;  // [-87, 8]
    const double want = std::exp(double(x)), got = O::expf_ggml(x);
    const double ulp = std::nextafter(float(want), INFINITY) - float(want);
    worst = std::max(worst, std::abs(got - want) / ulp);
  }
  // The Arm routine it derives from is within 1.45 ulp + 0.5 for rounding; llama.cpp's AVX-512
  // form adds the polynomial's 1 before the last step instead of after scaling, which costs
  // up to 2.21 ulp (worst at x = -48.22). A bug in the reduction or a coefficient is off by far more.
  EXPECT_LE(worst, 2.25);
}

TEST(Attention, LongSequenceExtremeScores) {
  // large logits: the online softmax must not overflow
  Tensor q = randn({4, 2, 8}, 1, 30.0f), k = randn({2000, 1, 8}, 2, 30.0f), v = randn({2000, 1, 8}, 3);
  O::AttentionParams p{1.0f, true, nullptr};
  Tensor out = O::attention(q, k, v, p);
  for (float x : out.to_vector()) ASSERT_TRUE(std::isfinite(x));
  EXPECT_LE(max_abs_diff(out, O::ref::attention(q, k, v, p)), 0.0);  // exact on every table
}

TEST(Attention, Gradients) {
  Tensor mask = randn({3, 5}, 9);
  for (bool causal : {false, true}) {
    O::AttentionParams p{0.4f, causal, causal ? nullptr : &mask};
    gradcheck("attention", {randn({3, 4, 6}, 1), randn({5, 2, 6}, 2), randn({5, 2, 3}, 3)},
              [&](auto& in) { return O::attention(in[0], in[1], in[2], p); },
              [&](auto& in, const Tensor& g) {
                Tensor lse;
                Tensor out = O::attention(in[0], in[1], in[2], p, &lse);
                Tensor dq = zeros_like(in[0]), dk = zeros_like(in[1]), dv = zeros_like(in[2]);
                O::attention_backward(in[0], in[1], in[2], out, lse, g, p, &dq, &dk, &dv);
                Tensor dq_r = zeros_like(in[0]), dk_r = zeros_like(in[1]), dv_r = zeros_like(in[2]);
                O::ref::attention_backward(in[0], in[1], in[2], out, lse, g, p, &dq_r, &dk_r, &dv_r);
                EXPECT_LE(rel_err(dq, dq_r), 2.1e-6);  // worst 2.1e-07
                EXPECT_LE(rel_err(dk, dk_r), 1.9e-6);  // worst 1.85e-07
                EXPECT_LE(rel_err(dv, dv_r), 1.3e-6);  // worst 1.26e-07
                return std::vector<Tensor>{dq, dk, dv};
              });
  }
}

// ---- embeddings -----------------------------------------------------------------------------

TEST(Embedding, AllDtypesMatchNaiveAndBadIdsFail) {
  Tensor table = randn({50, 64}, 1);
  const std::vector<int32_t> ids = {0, 49, 7, 7};
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0}) {
    Tensor tq = table.to(t);
    EXPECT_EQ(max_abs_diff(O::embedding(tq, ids), O::ref::embedding(tq, ids)), 0.0) << dtype_name(t);
  }
  EXPECT_THROW(O::embedding(table, {50}), Error);
  EXPECT_THROW(O::embedding(table, {-1}), Error);
  Tensor dy = randn({4, 64}, 2), dt = zeros_like(table), dt_r = zeros_like(table);
  O::embedding_backward(ids, dy, &dt);
  O::ref::embedding_backward(ids, dy, &dt_r);
  EXPECT_LE(rel_err(dt, dt_r), 0.0);  // exact on every table
  EXPECT_NEAR(dt.at({7, 3}), dy.at({2, 3}) + dy.at({3, 3}), 1e-6);  // repeated id accumulates
}

TEST(PatchEmbed, MatchesNaiveAndGradients) {
  Tensor img = randn({3, 18, 17}, 1), w = randn({10, 3, 4, 4}, 2), b = randn({10}, 3);
  Tensor out = O::patch_embed(img, w, &b, 4);
  EXPECT_EQ(out.shape(), Shape({16, 10}));  // 4x4 patches; remainders dropped
  EXPECT_LE(rel_err(out, O::ref::patch_embed(img, w, &b, 4)), 8.3e-7);  // worst 8.28e-08
  Tensor w16 = w.to(DType::F16);
  EXPECT_LE(rel_err(O::patch_embed(img, w16, &b, 4), O::ref::patch_embed(img, w16, &b, 4)), 7.6e-7);  // worst 7.58e-08
  gradcheck("patch_embed", {randn({2, 8, 8}, 4), randn({5, 2, 4, 4}, 5), randn({5}, 6)},
            [](auto& in) { return O::patch_embed(in[0], in[1], &in[2], 4); },
            [](auto& in, const Tensor& g) {
              Tensor di = zeros_like(in[0]), dw = zeros_like(in[1]), db = zeros_like(in[2]);
              O::patch_embed_backward(in[0], in[1], g, 4, &di, &dw, &db);
              Tensor di_r = zeros_like(in[0]), dw_r = zeros_like(in[1]), db_r = zeros_like(in[2]);
              O::ref::patch_embed_backward(in[0], in[1], g, 4, &di_r, &dw_r, &db_r);
              EXPECT_LE(rel_err(di, di_r), 4.9e-7);  // worst 4.84e-08
              EXPECT_LE(rel_err(dw, dw_r), 5e-7);  // worst 5e-08
              EXPECT_LE(rel_err(db, db_r), 0.0);  // exact on every table
              return std::vector<Tensor>{di, dw, db};
            });
}

// ---- grid ops (LDPv2's pool and position-encoding convolution) --------------------------------

TEST(GridOps, AvgPool2MatchesNaiveAndGradients) {
  const Tensor x = randn({36, 7}, 1);  // a 6x6 grid of 7 channels
  const Tensor y = O::avg_pool2(noncontiguous_copy(x));
  ASSERT_EQ(y.shape(), Shape({9, 7}));
  EXPECT_LE(rel_err(y, O::ref::avg_pool2(x)), 5.5e-7);  // worst 5.47e-08 (the reference sums in double)
  // Output (1, 2) is the mean of patches (2, 4), (2, 5), (3, 4), (3, 5), channel 3.
  const float want = (x.at({2 * 6 + 4, 3}) + x.at({2 * 6 + 5, 3}) + x.at({3 * 6 + 4, 3}) + x.at({3 * 6 + 5, 3})) / 4;
  EXPECT_NEAR(y.at({1 * 3 + 2, 3}), want, 1e-6);
  EXPECT_THROW(O::avg_pool2(randn({35, 2}, 1)), Error);  // not a square
  EXPECT_THROW(O::avg_pool2(randn({25, 2}, 1)), Error);  // an odd side
  gradcheck("avg_pool2", {x}, [](auto& in) { return O::avg_pool2(in[0]); },
            [](auto& in, const Tensor& g) {
              Tensor d = zeros_like(in[0]), d_r = zeros_like(in[0]);
              O::avg_pool2_backward(g, &d);
              O::ref::avg_pool2_backward(g, &d_r);
              EXPECT_LE(rel_err(d, d_r), 0.0);  // exact on every table
              return std::vector<Tensor>{d};
            });
}

TEST(GridOps, Depthwise3x3MatchesNaiveAndGradients) {
  const Tensor x = randn({25, 9}, 1), w = randn({9, 1, 3, 3}, 2), b = randn({9}, 3);  // a 5x5 grid
  const Tensor y = O::depthwise3x3(noncontiguous_copy(x), w, &b);
  ASSERT_EQ(y.shape(), Shape({25, 9}));
  EXPECT_LE(rel_err(y, O::ref::depthwise3x3(x, w, &b)), 6.8e-7);  // worst 6.72e-08
  // The kernel as [d, 9] and [d, 3, 3] is the same kernel; no bias is a zero bias.
  EXPECT_EQ(max_abs_diff(O::depthwise3x3(x, w.reshape({9, 9}), &b), y), 0.0);
  EXPECT_EQ(max_abs_diff(O::depthwise3x3(x, w.reshape({9, 3, 3}), &b), y), 0.0);
  const Tensor zb = Tensor::zeros({9});
  EXPECT_EQ(max_abs_diff(O::depthwise3x3(x, w, nullptr), O::depthwise3x3(x, w, &zb)), 0.0);
  // A corner sees 4 taps (zero padding): output (0, 0) channel 2.
  float want = b.at({2});
  for (int ky = 1; ky < 3; ++ky)
    for (int kx = 1; kx < 3; ++kx) want += w.at({2, 0, ky, kx}) * x.at({(ky - 1) * 5 + kx - 1, 2});
  EXPECT_NEAR(y.at({0, 2}), want, 1e-5);
  EXPECT_THROW(O::depthwise3x3(randn({24, 9}, 1), w, &b), Error);            // not a square
  EXPECT_THROW(O::depthwise3x3(x, randn({9, 1, 2, 2}, 2), &b), Error);       // not 3x3 taps
  const Tensor b8 = randn({8}, 4);
  EXPECT_THROW(O::depthwise3x3(x, w, &b8), Error);                           // bias of 8
  gradcheck("depthwise3x3", {x, w, b}, [](auto& in) { return O::depthwise3x3(in[0], in[1], &in[2]); },
            [](auto& in, const Tensor& g) {
              Tensor dx = zeros_like(in[0]), dw = zeros_like(in[1]), db = zeros_like(in[2]);
              O::depthwise3x3_backward(in[0], in[1], g, &dx, &dw, &db);
              Tensor dx_r = zeros_like(in[0]), dw_r = zeros_like(in[1]), db_r = zeros_like(in[2]);
              O::ref::depthwise3x3_backward(in[0], in[1], g, &dx_r, &dw_r, &db_r);
              EXPECT_LE(rel_err(dx, dx_r), 7.3e-7);  // worst 7.27e-08
              EXPECT_LE(rel_err(dw, dw_r), 8.1e-7);  // worst 8.07e-08
              EXPECT_LE(rel_err(db, db_r), 1.1e-6);  // worst 1.00e-07
              return std::vector<Tensor>{dx, dw, db};
            });
}

// ---- shape ops ------------------------------------------------------------------------------

TEST(ShapeOps, MatchNaiveAndGradients) {
  Tensor a = randn({2, 3, 4}, 1), b = randn({2, 5, 4}, 2);
  EXPECT_EQ(max_abs_diff(O::concat({a, noncontiguous_copy(b)}, 1), O::ref::concat({a, b}, 1)), 0.0);
  EXPECT_EQ(max_abs_diff(O::concat({a, a}, -1), O::ref::concat({a, a}, 2)), 0.0);
  EXPECT_THROW(O::concat({a, b}, 0), Error);
  EXPECT_EQ(max_abs_diff(O::slice(b, 1, 1, 4), O::ref::slice(b, 1, 1, 4)), 0.0);
  EXPECT_EQ(max_abs_diff(O::transpose(b, 0, 2), O::ref::transpose(b, 0, 2)), 0.0);
  EXPECT_TRUE(O::transpose(b, 0, 2).is_contiguous());
  gradcheck("concat", {a, b}, [](auto& in) { return O::concat({in[0], in[1]}, 1); },
            [](auto& in, const Tensor& g) {
              Tensor da = zeros_like(in[0]), db = zeros_like(in[1]);
              O::concat_backward(g, 1, {&da, &db});
              return std::vector<Tensor>{da, db};
            });
  gradcheck("slice", {b}, [](auto& in) { return O::slice(in[0], 2, 1, 3); },
            [](auto& in, const Tensor& g) {
              Tensor d = zeros_like(in[0]), d_r = zeros_like(in[0]);
              O::slice_backward(g, 2, 1, &d);
              O::ref::slice_backward(g, 2, 1, &d_r);
              EXPECT_EQ(max_abs_diff(d, d_r), 0.0);
              return std::vector<Tensor>{d};
            });
  gradcheck("transpose", {b}, [](auto& in) { return O::transpose(in[0], 1, 2); },
            [](auto& in, const Tensor& g) {
              Tensor d = zeros_like(in[0]), d_r = zeros_like(in[0]);
              O::transpose_backward(g, 1, 2, &d);
              O::ref::transpose_backward(g, 1, 2, &d_r);
              EXPECT_EQ(max_abs_diff(d, d_r), 0.0);
              return std::vector<Tensor>{d};
            });
}

// ---- loss -----------------------------------------------------------------------------------

TEST(CrossEntropy, IgnoreMaskMatchesNaiveAndGradients) {
  Tensor logits = randn({6, 40}, 1, 3.0f);
  logits.at({0, 3}) = 80.0f;  // extreme logit
  const std::vector<int32_t> t = {3, O::kIgnoreIndex, 0, 39, O::kIgnoreIndex, 7};
  EXPECT_NEAR(O::cross_entropy(logits, t), O::ref::cross_entropy(logits, t), 0.0);  // exact on every table
  EXPECT_NEAR(O::cross_entropy(noncontiguous_copy(logits), t), O::ref::cross_entropy(logits, t), 0.0);  // exact on every table
  // uniform logits: loss = log(V)
  EXPECT_NEAR(O::cross_entropy(Tensor::zeros({2, 40}), {1, 2}), std::log(40.0f), 1e-5);
  // every target ignored: zero loss, zero grad
  Tensor g0 = zeros_like(logits);
  const std::vector<int32_t> none(6, O::kIgnoreIndex);
  EXPECT_EQ(O::cross_entropy(logits, none), 0.0f);
  O::cross_entropy_backward(logits, none, 1.0f, &g0);
  for (float v : g0.to_vector()) EXPECT_EQ(v, 0.0f);
  EXPECT_THROW(O::cross_entropy(logits, {40, 0, 0, 0, 0, 0}), Error);
  // ignored rows get no gradient
  Tensor g = zeros_like(logits), g_r = zeros_like(logits);
  O::cross_entropy_backward(logits, t, 2.0f, &g);
  O::ref::cross_entropy_backward(logits, t, 2.0f, &g_r);
  EXPECT_LE(rel_err(g, g_r), 1.3e-6);  // worst 1.22e-07
  for (int64_t j = 0; j < 40; ++j) EXPECT_EQ(g.at({1, j}), 0.0f);
  const std::vector<int32_t> t2 = {2, O::kIgnoreIndex, 4};
  gradcheck("cross_entropy", {randn({3, 9}, 2)},
            [&](auto& in) { return Tensor::full({1}, O::cross_entropy(in[0], t2)); },
            [&](auto& in, const Tensor& g) {
              Tensor d = zeros_like(in[0]);
              O::cross_entropy_backward(in[0], t2, g.to_vector()[0], &d);
              return std::vector<Tensor>{d};
            });
}
