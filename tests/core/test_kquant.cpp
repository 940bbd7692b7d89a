// The K-quant references (core/kquant.h): q8_K activations as llama.cpp rounds them, and the
// integer product against the float product of the dequantized values. Whether the unpacking
// reads llama.cpp's layouts right is shown by the logits of its quantized files
// (tests/lm/test_lm.cpp, KQuant parity).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "ocellus/core/dtype.h"
#include "ocellus/core/error.h"
#include "ocellus/core/kquant.h"
#include "ocellus/core/quant.h"
#include "ops/kernels/kernels.h"

using namespace ocellus;

namespace {

// n random values, some blocks of them zero, one with its largest value negative.
std::vector<float> activations(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = nd(rng);
  return x;
}

// Random super-blocks of type t: random bytes, with the f16 scales set to sane values.
std::vector<uint8_t> random_blocks(DType t, int64_t n, uint32_t seed) {
  const size_t bb = size_t(dtype_info(t).block_bytes);
  std::vector<uint8_t> w(size_t(n / kQK_K) * bb);
  std::mt19937 rng(seed);
  for (uint8_t& b : w) b = uint8_t(rng());
  for (size_t i = 0; i < w.size() / bb; ++i) {
    uint8_t* blk = w.data() + i * bb;
    const uint16_t d = f32_to_fp16(0.01f + 0.001f * float(i)), dmin = f32_to_fp16(0.02f);
    switch (t) {
      case DType::Q2_K: std::memcpy(blk + 80, &d, 2), std::memcpy(blk + 82, &dmin, 2); break;
      case DType::Q3_K: std::memcpy(blk + 108, &d, 2); break;
      case DType::Q4_K:
      case DType::Q5_K: std::memcpy(blk, &d, 2), std::memcpy(blk + 2, &dmin, 2); break;
      case DType::Q6_K: std::memcpy(blk + 208, &d, 2); break;
      default: break;
    }
  }
  return w;
}

}  // namespace

TEST(KQuant, Q8KActivationsRoundAsLlamaCpp) {
  const int64_t n = 4 * kQK_K;
  std::vector<float> x = activations(n, 1);
  for (int j = 0; j < kQK_K; ++j) x[size_t(2 * kQK_K + j)] = 0.0f;  // block 2 all zero
  x[size_t(3 * kQK_K + 7)] = -9.0f;                                 // block 3: largest negative
  std::vector<BlockQ8K> q(size_t(n / kQK_K));
  quantize_row_q8_K(x.data(), q.data(), n);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const BlockQ8K& qb = q[size_t(b)];
    if (b == 2) {
      EXPECT_EQ(qb.d, 0.0f);
      continue;
    }
    float max = 0;
    for (int j = 0; j < kQK_K; ++j)
      if (std::fabs(x[size_t(b * kQK_K + j)]) > std::fabs(max)) max = x[size_t(b * kQK_K + j)];
    EXPECT_EQ(qb.d, 1.0f / (-127.0f / max)) << "d = -max / 127, the sign of the largest value kept";
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += qb.qs[16 * g + j];
      EXPECT_EQ(qb.bsums[g], sum);
    }
    for (int j = 0; j < kQK_K; ++j) {
      const float v = x[size_t(b * kQK_K + j)];
      EXPECT_LE(std::fabs(qb.d * qb.qs[j] - v), std::fabs(qb.d) * 0.5f * (1 + 1e-6f)) << "block " << b << " value " << j;
    }
  }
  // The largest value always becomes -127 (d carries the sign): -9 / d with d = 9 / 127.
  EXPECT_EQ(q[3].qs[7], -127);
  EXPECT_GT(q[3].d, 0.0f);
}

// For every K type: the product's integer sums give Σ dequant(w) dequant(x) up to float rounding.
TEST(KQuant, ProductEqualsTheDequantizedDot) {
  const int64_t n = 3 * kQK_K;
  const std::vector<float> x = activations(n, 7);
  std::vector<BlockQ8K> xq(size_t(n / kQK_K));
  quantize_row_q8_K(x.data(), xq.data(), n);
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const std::vector<uint8_t> w = random_blocks(t, n, uint32_t(t) + 11);
    std::vector<float> wd(static_cast<size_t>(n));
    dequantize_row(t, w.data(), wd.data(), n);
    double exact = 0, mag = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double xi = double(xq[size_t(i / kQK_K)].d) * xq[size_t(i / kQK_K)].qs[i % kQK_K];
      exact += double(wd[size_t(i)]) * xi, mag += std::fabs(double(wd[size_t(i)]) * xi);
    }
    const float got = dot_k_q8_K(t, w.data(), xq.data(), n);
    EXPECT_LE(std::fabs(got - exact), 1e-6 * mag) << dtype_name(t) << ": " << got << " vs " << exact;
  }
}

TEST(KQuant, TypesParseAndRowsMustBeWholeSuperBlocks) {
  EXPECT_EQ(dtype_from_name("q4_K"), DType::Q4_K);
  EXPECT_EQ(dtype_from_name("q6_k"), DType::Q6_K);
  EXPECT_EQ(row_bytes(DType::Q4_K, 512), 288u);
  try {
    row_bytes(DType::Q5_K, 320);
    FAIL() << "a 320-element q5_K row must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a multiple of the block size 256"), std::string::npos) << e.what();
  }
  std::vector<float> x(320, 1.0f);
  std::vector<uint8_t> out(512);
  EXPECT_THROW(quantize_row(DType::Q4_K, x.data(), out.data(), 320), Error);
}

// Every table's K-quant products give the reference's value exactly (integer sums exact, the same
// float steps), for rows of 1 to 11 super-blocks, 1 to 8 activation rows at once (each row's
// activations different, block 0 of row 0 dominated by negatives).
TEST(KQuant, EveryTableEqualsTheReferenceProduct) {
  for (int64_t n : {kQK_K, 3 * kQK_K, 8 * kQK_K, 11 * kQK_K}) {
    const int64_t nb = n / kQK_K;
    std::vector<BlockQ8K> xq(size_t(kern::kGemmRows * nb));
    for (int r = 0; r < kern::kGemmRows; ++r) {
      std::vector<float> x = activations(n, uint32_t(n) + uint32_t(r));
      if (r == 0)
        for (int64_t j = 0; j < kQK_K; ++j) x[size_t(j)] *= -4.0f;
      quantize_row_q8_K(x.data(), xq.data() + r * nb, n);
    }
    for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
      const std::vector<uint8_t> w = random_blocks(t, n, uint32_t(n) + uint32_t(t));
      for (int isa = 0; isa <= 2; ++isa) {
        const kern::Table* T = kern::for_isa(isa);
        if (!T) continue;
        const auto gemm = kern::gemm_k(*T, t);
        for (int rows = 1; rows <= kern::kGemmRows; ++rows) {
          std::vector<float> y(size_t(2 * rows), -1.0f);
          gemm(w.data(), xq.data(), nb, rows, n, y.data(), 2);
          for (int r = 0; r < rows; ++r)
            EXPECT_EQ(y[size_t(2 * r)], dot_k_q8_K(t, w.data(), xq.data() + r * nb, n))
                << T->name << " " << dtype_name(t) << " n=" << n << " row " << r << " of " << rows;
        }
      }
    }
  }
}

// The q4_K / q6_K tile kernels (8 rows interleaved), for 1-8 activation rows, give each tile row
// the value of the K product of that row in its file layout, bit for bit, in every table.
template <typename Tile, typename Block, typename Gemv>
void expect_tile_kernel_equals_rows(DType t, Gemv gemm_of) {
  for (int64_t n : {kQK_K, 8 * kQK_K}) {
    const int64_t nb = n / kQK_K;
    std::vector<BlockQ8K> xq(static_cast<size_t>(kern::kGemmRows * nb));
    for (int a = 0; a < kern::kGemmRows; ++a) quantize_row_q8_K(activations(n, uint32_t(7 + a)).data(), xq.data() + a * nb, n);
    std::vector<std::vector<uint8_t>> rows;
    for (int r = 0; r < int(kKPackRows); ++r) rows.push_back(random_blocks(t, n, uint32_t(100 + r)));
    std::vector<Tile> tiles(static_cast<size_t>(nb));
    for (int64_t i = 0; i < nb; ++i)
      for (int r = 0; r < int(kKPackRows); ++r) pack_tile_row(reinterpret_cast<const Block*>(rows[size_t(r)].data())[i], r, tiles[size_t(i)]);
    for (int isa = 0; isa <= 2; ++isa) {
      const kern::Table* T = kern::for_isa(isa);
      if (!T) continue;
      for (int na = 1; na <= kern::kGemmRows; ++na) {
        std::vector<float> y(size_t(na * 9), -1.0f);
        gemm_of(*T)(tiles.data(), xq.data(), nb, na, n, y.data(), 9);
        for (int a = 0; a < na; ++a)
          for (int r = 0; r < int(kKPackRows); ++r)
            EXPECT_EQ(y[size_t(a * 9 + r)], dot_k_q8_K(t, rows[size_t(r)].data(), xq.data() + a * nb, n))
                << T->name << " " << dtype_name(t) << " n=" << n << " tile row " << r << ", activation row " << a << " of " << na;
      }
    }
  }
}

TEST(KQuant, TileKernelsEqualTheRowProducts) {
  expect_tile_kernel_equals_rows<BlockQ4Kx8, BlockQ4K>(DType::Q4_K, [](const kern::Table& T) { return T.gemm_q4_Kx8; });
  expect_tile_kernel_equals_rows<BlockQ6Kx8, BlockQ6K>(DType::Q6_K, [](const kern::Table& T) { return T.gemm_q6_Kx8; });
}
