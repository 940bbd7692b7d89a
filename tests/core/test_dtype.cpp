#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "ocellus/core/dtype.h"
#include "ocellus/core/error.h"
#include "ocellus/core/quant.h"
#include "testutil.h"

using namespace ocellus;

static uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Exact reference for f32 -> f16: compare against the two nearest halves by exhaustive search
// over all finite halves is too slow per value, so use double arithmetic on the decoded value.
static uint16_t fp16_reference(float f) {
  if (std::isnan(f)) return 0x7e00;
  uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  double a = std::fabs(double(f));
  uint16_t best = 0;
  double best_err = INFINITY;
  // halves are monotone in their bit pattern for positive values: binary search
  uint16_t lo = 0, hi = 0x7c00;
  while (hi - lo > 1) {
    uint16_t mid = uint16_t((lo + hi) / 2);
    if (double(fp16_to_f32(mid)) <= a) lo = mid; else hi = mid;
  }
  for (uint16_t c : {lo, hi}) {
    double v = c == 0x7c00 ? 65520.0 : double(fp16_to_f32(c));  // 65520 rounds to inf
    double err = std::fabs(v - a);
    if (err < best_err || (err == best_err && (c & 1) == 0)) {
      best = c;
      best_err = err;
    }
  }
  return uint16_t(sign | best);
}

TEST(DType, InfoAndNames) {
  EXPECT_EQ(dtype_info(DType::Q8_0).block_bytes, 34);
  EXPECT_EQ(dtype_info(DType::Q4_0).block_bytes, 18);
  EXPECT_EQ(dtype_from_name("q4_0"), DType::Q4_0);
  EXPECT_EQ(dtype_from_name("q5_k"), DType::Q5_K);
  EXPECT_THROW(dtype_from_name("q5_1"), Error);
  EXPECT_THROW(dtype_from_name("iq4_xs"), Error);
  EXPECT_EQ(row_bytes(DType::Q4_0, 64), 36u);
  EXPECT_THROW(row_bytes(DType::Q8_0, 33), Error);
  EXPECT_THROW(row_bytes(DType::F32, INT64_MAX / 2), Error);
}

TEST(DType, Fp16AllHalvesRoundTrip) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = fp16_to_f32(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(fp16_to_f32(f32_to_fp16(f))));
      continue;
    }
    ASSERT_EQ(f32_to_fp16(f), h) << "half 0x" << std::hex << h;
  }
}

TEST(DType, Fp16RoundsToNearestEven) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<uint32_t> any;
  for (int i = 0; i < 200000; ++i) {
    uint32_t u = any(rng);
    // spread over the half range: exponents around [-30, 20]
    u = (u & 0x807fffff) | ((97 + (u >> 23) % 54) << 23);
    float f;
    std::memcpy(&f, &u, 4);
    ASSERT_EQ(f32_to_fp16(f), fp16_reference(f)) << f;
  }
  // ties: 1 + 2^-11 lies halfway between 1 and the next half; even wins
  EXPECT_EQ(f32_to_fp16(1.0f + 0x1p-11f), 0x3c00);
  EXPECT_EQ(f32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3c02);
  EXPECT_EQ(f32_to_fp16(65520.0f), 0x7c00);
  EXPECT_EQ(f32_to_fp16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_fp16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_EQ(f32_to_fp16(0x1p-25f), 0x0000);          // tie with zero -> even (0)
  EXPECT_EQ(f32_to_fp16(0x1p-25f * 1.0001f), 0x0001);  // just above the tie
}

TEST(DType, Bf16) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  float tie;
  uint32_t u = 0x3f808000;  // exactly halfway between two bf16 values, lower is even
  std::memcpy(&tie, &u, 4);
  EXPECT_EQ(f32_to_bf16(tie), 0x3f80);
  u = 0x3f818000;  // halfway, upper is even
  std::memcpy(&tie, &u, 4);
  EXPECT_EQ(f32_to_bf16(tie), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = bf16_to_f32(uint16_t(h));
    if (!std::isnan(f)) ASSERT_EQ(f32_to_bf16(f), h);
  }
  (void)bits;
}

// Quantize -> dequantize error: half a quantization step d, plus what storing d as f16 costs
// (|d16 - d| per unit of the quantized value). q4_0 maps the largest magnitude to -8, so values of
// the other sign near the top clamp at +7 and may be one full step off, as in llama.cpp.
template <typename Block>
static void check_roundtrip(DType t, void (*q)(const float*, Block*, int64_t),
                            void (*dq)(const Block*, float*, int64_t)) {
  const int64_t n = 32 * 64;
  Tensor x = test::randn({n}, 7, 2.0f);
  float* xp = x.data<float>();
  xp[5] = 40.0f;  // an outlier block
  for (int j = 64; j < 96; ++j) xp[j] = 0.0f;  // an all-zero block
  std::vector<Block> blocks(size_t(n / 32));
  std::vector<float> y(static_cast<size_t>(n));
  q(xp, blocks.data(), n);
  dq(blocks.data(), y.data(), n);
  const bool q4 = t == DType::Q4_0;
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j)
      if (std::fabs(xp[b * 32 + j]) > amax) amax = std::fabs(xp[b * 32 + j]), max = xp[b * 32 + j];
    const double d = q4 ? std::fabs(max / 8.0) : amax / 127.0;
    const double d16 = std::fabs(fp16_to_f32(blocks[b].d));
    for (int j = 0; j < 32; ++j) {
      const int64_t i = b * 32 + j;
      const double units = std::fabs(xp[i]) / (d ? d : 1) + 1;  // |quantized value| bound
      const bool clamped = q4 && d && (xp[i] / (max / -8.0)) > 7.5;
      const double bound = (clamped ? 1.0 : 0.5) * d + units * std::fabs(d16 - d) + 1e-7;
      ASSERT_LE(std::fabs(y[i] - xp[i]), bound) << dtype_name(t) << " element " << i;
    }
  }
  for (int j = 64; j < 96; ++j) EXPECT_EQ(y[j], 0.0f);
}

TEST(Quant, Q8_0RoundTrip) {
  check_roundtrip<BlockQ8_0>(DType::Q8_0, quantize_row_q8_0, dequantize_row_q8_0);
}
TEST(Quant, Q4_0RoundTrip) {
  check_roundtrip<BlockQ4_0>(DType::Q4_0, quantize_row_q4_0, dequantize_row_q4_0);
}

TEST(Quant, Q4_0MatchesLlamaCppLayout) {
  // Hand-checked block: values k * 0.5 for k = -8..7 then the same again in the high half.
  float x[32];
  for (int j = 0; j < 16; ++j) x[j] = float(j - 8) * 0.5f, x[j + 16] = float(7 - j) * 0.5f;
  BlockQ4_0 b;
  quantize_row_q4_0(x, &b, 32);
  EXPECT_EQ(fp16_to_f32(b.d), 0.5f);  // max-magnitude value -4 maps to -8
  EXPECT_EQ(b.qs[0], uint8_t(0x0 | (0xf << 4)));  // element 0 -> 0, element 16 -> 15
  EXPECT_EQ(b.qs[15], uint8_t(0xf | (0x0 << 4)));
}

TEST(Quant, Q8_0MatchesLlamaCppRounding) {
  float x[32] = {};
  x[0] = 127.0f;  // d = 1
  x[1] = 2.5f;    // roundf: away from zero -> 3
  x[2] = -2.5f;   // -> -3
  BlockQ8_0 b;
  quantize_row_q8_0(x, &b, 32);
  EXPECT_EQ(fp16_to_f32(b.d), 1.0f);
  EXPECT_EQ(b.qs[0], 127);
  EXPECT_EQ(b.qs[1], 3);
  EXPECT_EQ(b.qs[2], -3);
}

TEST(Quant, RowDispatchAllTypes) {
  const int64_t n = 256;
  Tensor x = test::randn({4, n}, 3);
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0}) {
    Tensor q = x.to(t);
    EXPECT_EQ(q.dtype(), t);
    EXPECT_EQ(q.nbytes(), 4 * row_bytes(t, n));
    double tol = t == DType::F32 ? 0 : t == DType::F16 ? 1e-3 : t == DType::BF16 ? 5e-3
               : t == DType::Q8_0 ? 1e-2 : 1.2e-1;
    EXPECT_LE(test::rel_err(q, x), tol) << dtype_name(t);
  }
}
