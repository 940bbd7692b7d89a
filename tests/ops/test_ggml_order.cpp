// The ops that reproduce llama.cpp's numerics (matmul / patch_embed in its summation order, the
// f16-table activations) and the packed SwiGLU, each against its plain reference in ops::ref, on
// random, non-contiguous and extreme inputs, under every kernel table this CPU has.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "isa_tables.h"
#include "ocellus/core/dtype.h"
#include "ocellus/core/error.h"
#include "ocellus/ops/elementwise.h"
#include "ocellus/ops/embed.h"
#include "ocellus/ops/matmul.h"
#include "testutil.h"

using namespace ocellus;
using namespace ocellus::test;
namespace O = ocellus::ops;

namespace {

// Equal bit for bit (NaN equal to NaN), element by element; reports the first difference.
void expect_same_values(const Tensor& got, const Tensor& want, const std::string& what) {
  const std::vector<float> a = got.to_vector(), b = want.to_vector();
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    uint32_t ua, ub;
    std::memcpy(&ua, &a[i], 4), std::memcpy(&ub, &b[i], 4);
    ASSERT_EQ(ua, ub) << what << ": element " << i << " is " << a[i] << ", reference " << b[i];
  }
}

// Rows whose sums depend on their order: large terms that cancel, small ones in between.
Tensor cancelling(const Shape& s, uint32_t seed) {
  Tensor t = randn(s, seed);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] *= (i % 5 == 0 ? 1e4f : i % 7 == 0 ? 1e-4f : 1.0f);
  return t;
}

// The worst relative error ‖a − b‖ / ‖b‖ of a row (rows of extreme values do not hide the others).
double worst_row_err(const Tensor& a, const Tensor& b) {
  double w = 0;
  for (int64_t r = 0; r < a.dim(0); ++r) w = std::max(w, rel_err(a.slice(0, r, r + 1), b.slice(0, r, r + 1)));
  return w;
}

}  // namespace

// The reference's order is a real constraint: on cancelling inputs a plain left-to-right sum
// differs from it, so an op summing in another order cannot pass the tests below.
TEST(GgmlOrder, ReferenceOrderIsNotTheSequentialSum) {
  const int64_t n = 2053;
  const Tensor w = cancelling({n}, 1), x = cancelling({n}, 2);
  float seq = 0.0f;
  for (int64_t i = 0; i < n; ++i) seq += w.data<float>()[i] * x.data<float>()[i];
  EXPECT_NE(O::ref::dot_ggml_order(w.data<float>(), x.data<float>(), n), seq);
}

TEST(GgmlOrder, MatmulEqualsReferenceInEveryTable) {
  for_each_isa([](Isa) {
    for (int64_t k : {1, 15, 16, 17, 100, 2053}) {
      const Tensor w = cancelling({7, k}, uint32_t(k)), x = cancelling({5, k}, uint32_t(k + 1)), b = randn({7}, 3);
      const O::PreparedWeight pw(w);
      const Tensor want = O::ref::matmul_ggml_order(x, pw, &b);
      expect_same_values(O::matmul_ggml_order(x, pw, &b), want, "k=" + std::to_string(k));
      expect_same_values(O::matmul_ggml_order(x, pw), O::ref::matmul_ggml_order(x, pw), "no bias, k=" + std::to_string(k));
      if (k > 1) {  // non-contiguous input (transposed storage) and a batch of rows
        expect_same_values(O::matmul_ggml_order(noncontiguous_copy(x), pw, &b), want, "non-contiguous, k=" + std::to_string(k));
        const Tensor x3 = cancelling({2, 3, k}, uint32_t(k + 2));
        expect_same_values(O::matmul_ggml_order(x3, pw, &b), O::ref::matmul_ggml_order(x3, pw, &b), "batched");
      }
      // And the reference is the product: within f32 rounding of the exact (double) sums.
      EXPECT_LE(rel_err(want, O::ref::matmul(x, w, &b)), 1e-6) << "k=" << k;
    }
    // Extremes: huge and subnormal values, zeros, a row of overflow to inf.
    Tensor w = randn({4, 40}, 7), x = randn({3, 40}, 8);
    w.data<float>()[0] = 3e38f, x.data<float>()[0] = 2.0f;                 // inf in row 0
    w.data<float>()[41] = 1e-40f, x.data<float>()[41] = 1e-3f;             // subnormal product
    for (int i = 0; i < 40; ++i) x.data<float>()[80 + i] = 0.0f;           // a zero row
    const O::PreparedWeight pw(w);
    expect_same_values(O::matmul_ggml_order(x, pw), O::ref::matmul_ggml_order(x, pw), "extremes");
  });
}

// Other weight types take the ordinary product (the reference: the exact sum).
TEST(GgmlOrder, MatmulOtherDtypesAreTheOrdinaryProduct) {
  for_each_isa([](Isa isa) {
    const Tensor w = randn({24, 96}, 4).to(DType::F16), x = randn({9, 96}, 5), b = randn({24}, 6);
    const O::PreparedWeight pw(w);
    const double e = rel_err(O::matmul_ggml_order(x, pw, &b), O::ref::matmul_ggml_order(x, pw, &b));
    std::printf("matmul_ggml_order f16 weights, %s: rel err %.3g\n", isa_name(isa), e);
    // worst achieved 7.3e-8 over generic/avx2/avx512 on an Intel Xeon (AVX-512 VNNI); bound = 10x
    EXPECT_LE(e, 7.3e-7);
  });
}

TEST(GgmlOrder, PatchEmbedEqualsReferenceInEveryTable) {
  for_each_isa([](Isa) {
    // 30 px at patch 7: the 2 px remainder dropped; K = 3 * 49 = 147 (a tail after 9 lanes of 16).
    const Tensor img = cancelling({3, 30, 30}, 11), w = randn({5, 3, 7, 7}, 12), b = randn({5}, 13);
    const Tensor want = O::ref::patch_embed_ggml_order(img, w, &b, 7);
    ASSERT_EQ(want.shape(), Shape({16, 5}));
    expect_same_values(O::patch_embed_ggml_order(img, w, &b, 7), want, "contiguous");
    expect_same_values(O::patch_embed_ggml_order(noncontiguous_copy(img), noncontiguous_copy(w), &b, 7), want, "non-contiguous");
    expect_same_values(O::patch_embed_ggml_order(img, w, nullptr, 7), O::ref::patch_embed_ggml_order(img, w, nullptr, 7), "no bias");
    EXPECT_LE(rel_err(want, O::ref::patch_embed(img, w, &b, 7)), 1e-6);
    Tensor big = img.clone();
    big.data<float>()[0] = 1e30f, big.data<float>()[1] = -1e30f, big.data<float>()[2] = 1e-42f;
    expect_same_values(O::patch_embed_ggml_order(big, w, &b, 7), O::ref::patch_embed_ggml_order(big, w, &b, 7), "extremes");
  });
}

// Every f16 value, values between them (the input rounding), both sides of GELU's ±10 cut,
// f16 overflow, infinities and NaN: the table lookups equal the per-element computation.
TEST(GgmlF16Activations, EqualReferenceEverywhere) {
  std::vector<float> v;
  for (uint32_t h = 0; h < 65536; ++h) v.push_back(fp16_to_f32(uint16_t(h)));
  const Tensor r = randn({4096}, 21, 4.0f);
  v.insert(v.end(), r.data<float>(), r.data<float>() + r.numel());
  for (float e : {-10.0f, std::nextafter(-10.0f, 0.0f), 10.0f, std::nextafter(10.0f, 0.0f), 65504.0f, 65520.0f, 7e4f, -7e4f,
                  3e38f, -3e38f, INFINITY, -INFINITY, NAN, 1e-8f, -1e-8f, 0.0f, -0.0f})
    v.push_back(e);
  while (v.size() % 4 != 0) v.push_back(1.0f);  // whole rows of 4 (the non-contiguous view transposes them)
  const Tensor x = Tensor::from_vector({int64_t(v.size()) / 4, 4}, v);
  for_each_isa([&](Isa) {
    for (O::Activation f : {O::Activation::GeluTanh, O::Activation::QuickGelu}) {
      const Tensor want = O::ref::activate_ggml_f16(f, x);
      expect_same_values(O::activate_ggml_f16(f, x), want, O::activation_name(f));
      expect_same_values(O::activate_ggml_f16(f, noncontiguous_copy(x)), want, std::string("non-contiguous ") + O::activation_name(f));
      // The reference is the function: f at the f16-rounded input, to f16 precision.
      const Tensor exact = O::ref::activate(f, x);
      for (int64_t i = 0; i < x.numel(); ++i) {
        const float xi = x.data<float>()[i];
        if (!(std::fabs(xi) < 10.0f)) continue;
        const double y = exact.data<float>()[i], d = std::fabs(double(want.data<float>()[i]) - y);
        // input rounding (slope below 1.13) and output rounding: each half an f16 ulp, 2^-11 relative
        EXPECT_LE(d, 0x1p-11 * (1.13 * std::fabs(xi) + std::fabs(y)) + 1e-7) << O::activation_name(f) << " x=" << xi;
      }
    }
    EXPECT_ANY_THROW(O::activate_ggml_f16(O::Activation::Silu, x));
    EXPECT_ANY_THROW(O::ref::activate_ggml_f16(O::Activation::Silu, x));
  });
}

TEST(SwigluPacked, ForwardAndBackwardMatchReference) {
  double worst_y = 0, worst_d = 0;
  for_each_isa([&](Isa isa) {
    double wy = 0, wd = 0;
    // f past one 1024-value piece of the backward, and rows below / above a thread's share.
    for (const auto& [n, f] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 7}, {2, 1029}, {40, 200}}) {
      Tensor gu = randn({n, 2 * f}, uint32_t(n * f), 3.0f);
      if (f >= 7) {  // extremes: exp's overflow and underflow, zero, subnormal, huge up
        float* p = gu.data<float>();
        p[0] = 100.0f, p[1] = -100.0f, p[2] = 0.0f, p[3] = 1e-40f, p[4] = -88.0f, p[f] = 1e30f, p[f + 1] = -1e30f;
      }
      const Tensor dy = randn({n, f}, uint32_t(n * f + 1));
      for (const bool strided : {false, true}) {
        const Tensor in = strided && n > 1 ? noncontiguous_copy(gu) : gu;
        const Tensor y = O::swiglu_packed(in), y_ref = O::ref::swiglu_packed(gu);
        Tensor d = Tensor::full({n, 2 * f}, std::nanf("")), d_ref = Tensor::empty({n, 2 * f});  // overwritten, NaN never read
        O::swiglu_packed_backward(in, strided && n > 1 ? noncontiguous_copy(dy) : dy, &d);
        O::ref::swiglu_packed_backward(gu, dy, &d_ref);
        wy = std::max(wy, worst_row_err(y, y_ref)), wd = std::max(wd, worst_row_err(d, d_ref));
      }
    }
    std::printf("swiglu_packed %s: forward rel err %.3g, backward %.3g\n", isa_name(isa), wy, wd);
    worst_y = std::max(worst_y, wy), worst_d = std::max(worst_d, wd);
  });
  // worst achieved: forward 9.6e-8, backward 1.3e-7 (per row) over generic/avx2/avx512 on an
  // Intel Xeon (AVX-512 VNNI); bound = 10x
  EXPECT_LE(worst_y, 9.6e-7);
  EXPECT_LE(worst_d, 1.3e-6);
  EXPECT_THROW(O::swiglu_packed(randn({2, 5}, 1)), Error);
}
