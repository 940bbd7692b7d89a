// Every SIMD kernel table the CPU supports against the portable generic table.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>

#include "ocellus/core/cpu.h"
#include "ocellus/core/quant.h"
#include "ocellus/ops/matmul.h"
#include "ops/kernels/kernels.h"
#include "isa_tables.h"
#include "q8_plain.h"
#include "testutil.h"

using namespace ocellus;

namespace {

// The SIMD tables this CPU runs; one it lacks is reported as not tested (isa_tables.h).
std::vector<const kern::Table*> simd_tables() {
  std::vector<const kern::Table*> v;
  for (Isa isa : test::tested_isas({Isa::Avx2, Isa::Avx512})) v.push_back(kern::for_isa(int(isa)));
  return v;
}

// Bounds (relative to the scale each check names): 10x the worst achieved over the tables on an
// Intel Xeon (AVX-512 VNNI); the worsts, printed by each test, beside them.
constexpr double kDotF32 = 8e-6;       // 7.97e-7 (avx512; avx2 7.35e-7), of Σ |w x|
constexpr double kDotF16 = 5.7e-6;     // 5.61e-7 (avx512; avx2 4.8e-7)
constexpr double kDotBf16 = 7.6e-6;    // 7.51e-7 (avx2; avx512 6.78e-7)
constexpr double kDotQ8 = 1.9e-6;      // 1.84e-7 (avx2, avx512)
constexpr double kDotQ4 = 8e-6;        // 7.98e-7 (avx2, avx512)
constexpr double kDotQ4Exact = 4.8e-6;  // generic against the double sum: 4.8e-7
constexpr double kTileQ4 = 7.1e-7;     // 7.08e-8 (avx2; avx512 4.75e-8; generic vs its row dots exact)
constexpr double kTileQ8 = 2.3e-7;     // 2.23e-8 (avx2, avx512; generic vs its row dots exact)
constexpr double kGgmlVsExact = 2.5e-7;  // 2.5e-8 (bit-identical in every table)
constexpr double kSumExp = 2.3e-6;     // 2.22e-7 (generic; avx2 / avx512 2.32e-8), of the sum
constexpr double kExpAffine = 5.7e-7;  // 5.66e-8 (every table), of the value

// Owns the three arrays of a quantized activation row.
struct ActBuf {
  std::vector<int8_t> qs;
  std::vector<float> d, s;
  explicit ActBuf(int64_t n) : qs(size_t(n)), d(size_t(n / 32)), s(size_t(n / 32)) {}
  Q8Act view() { return {qs.data(), d.data(), s.data()}; }
};

// Σ |w x| of each row of a quantized matrix [rows, n] with the rounded activations.
std::vector<double> row_magnitudes(const Tensor& w, Q8Act x, int64_t n) {
  const Tensor wf = w.to(DType::F32);
  std::vector<double> m(size_t(w.dim(0)));
  for (int64_t r = 0; r < w.dim(0); ++r)
    for (int64_t i = 0; i < n; ++i) m[size_t(r)] += std::fabs(double(wf.data<float>()[r * n + i]) * x.d[i / 32] * x.qs[i]);
  return m;
}

// The worst |got - want| / scale seen per check (scale: Σ |w x|, the size of the terms whose
// reordered f32 sums differ), printed at the end of a test, and checked against its bound.
struct Worst {
  std::map<std::string, double> seen;
  void check(const std::string& what, double got, double want, double scale, double bound) {
    const double r = std::fabs(got - want) / scale;
    seen[what] = std::max(seen[what], r);
    EXPECT_LE(r, bound) << what;
  }
  ~Worst() {
    for (const auto& [k, v] : seen) std::printf("  %-24s worst %.3g\n", k.c_str(), v);
  }
};

}  // namespace

TEST(Kernels, ReportWhatIsTested) {
  std::string names;
  for (auto* t : simd_tables()) names += std::string(t->name) + " ";
  std::printf("SIMD kernel tables tested on this CPU: %s\n", names.empty() ? "(none)" : names.c_str());
  EXPECT_NE(kern::for_isa(0), nullptr);
}

TEST(Kernels, ConversionsMatchGeneric) {
  const kern::Table& G = kern::kGeneric;
  for (int64_t n : {1, 7, 16, 33, 1000}) {
    Tensor x = test::randn({n}, uint32_t(n), 3.0f);
    x.data<float>()[0] = 1e6f;  // overflows f16 -> inf
    if (n > 1) x.data<float>()[1] = 1e-7f;  // f16 subnormal
    std::vector<uint16_t> hg(n), hs(n);
    std::vector<float> fg(n), fs(n);
    G.f32_to_f16(x.data<float>(), hg.data(), n);
    for (auto* T : simd_tables()) {
      T->f32_to_f16(x.data<float>(), hs.data(), n);
      ASSERT_EQ(hg, hs) << T->name << " n=" << n;
      G.f16_to_f32(hg.data(), fg.data(), n);
      T->f16_to_f32(hg.data(), fs.data(), n);
      ASSERT_EQ(fg, fs) << T->name;
      G.bf16_to_f32(hg.data(), fg.data(), n);
      T->bf16_to_f32(hg.data(), fs.data(), n);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_TRUE(fg[i] == fs[i] || (std::isnan(fg[i]) && std::isnan(fs[i])));
    }
  }
}

TEST(Kernels, DequantMatchesScalarReference) {
  const int64_t n = 32 * 40;
  Tensor x = test::randn({n}, 5);
  Tensor q8 = x.to(DType::Q8_0), q4 = x.to(DType::Q4_0);
  std::vector<float> ref(n), got(n);
  dequantize_row_q8_0(q8.data<BlockQ8_0>(), ref.data(), n);
  for (auto* T : simd_tables()) {
    T->dequant_q8_0(q8.raw(), got.data(), n);
    ASSERT_EQ(ref, got) << T->name;
  }
  kern::kGeneric.dequant_q8_0(q8.raw(), got.data(), n);
  ASSERT_EQ(ref, got);
  dequantize_row_q4_0(q4.data<BlockQ4_0>(), ref.data(), n);
  for (auto* T : simd_tables()) {
    T->dequant_q4_0(q4.raw(), got.data(), n);
    ASSERT_EQ(ref, got) << T->name;
  }
  kern::kGeneric.dequant_q4_0(q4.raw(), got.data(), n);
  ASSERT_EQ(ref, got);
}

TEST(Kernels, ActivationQuantizationMatchesGeneric) {
  const int64_t n = 32 * 17;
  Tensor x = test::randn({n}, 11, 5.0f);
  for (int j = 32; j < 64; ++j) x.data<float>()[j] = 0.0f;  // zero block
  // exact ties at .5 after scaling round to even in every table
  x.data<float>()[64] = 127.0f;
  x.data<float>()[65] = 2.5f;
  ActBuf g(n), s(n);
  kern::kGeneric.quantize_q8_act(x.data<float>(), g.view(), n);
  EXPECT_EQ(g.qs[65], 2);  // 2.5 rounds to even
  for (auto* T : simd_tables()) {
    T->quantize_q8_act(x.data<float>(), s.view(), n);
    EXPECT_EQ(g.qs, s.qs) << T->name;
    EXPECT_EQ(g.d, s.d) << T->name;
    for (int64_t b = 0; b < n / 32; ++b) ASSERT_FLOAT_EQ(g.s[b], s.s[b]) << T->name;
  }
}

// Activations quantized as llama.cpp's q8_0 (its AVX path; q8_plain.h states it): every table,
// generic included, against that statement.
TEST(Kernels, ActivationQuantizationMatchesPlainStatement) {
  const int64_t n = 32 * 9;
  Tensor x = test::randn({n}, 13, 2.0f);
  float* p = x.data<float>();
  for (int j = 32; j < 64; ++j) p[j] = 0.0f;                         // zero block: d = 0, q = 0
  p[64] = 127.0f, p[65] = 2.5f, p[66] = -3.5f, p[67] = 0.5f;        // ties at .5 after scaling
  for (int j = 160; j < 192; ++j) p[j] *= 1e-30f;                   // scale below f16's range: d = 0
  for (int j = 128; j < 160; ++j) p[j] = 1e4f * float(j - 140);     // wide block
  const test::Q8Plain want = test::quantize_q8_plain(p, n);
  EXPECT_EQ(want.qs[65], 2);
  EXPECT_EQ(want.qs[66], -4);
  EXPECT_EQ(want.qs[67], 0);
  std::vector<const kern::Table*> tables = simd_tables();
  tables.push_back(&kern::kGeneric);
  for (const kern::Table* T : tables) {
    ActBuf got(n);
    T->quantize_q8_act(p, got.view(), n);
    EXPECT_EQ(got.qs, want.qs) << T->name;
    EXPECT_EQ(got.d, want.d) << T->name;
    EXPECT_EQ(got.s, want.s) << T->name;
  }
}

TEST(Kernels, DotProductsMatchGeneric) {
  Worst W;
  for (int64_t n : {32, 64, 96, 480, 1024, 2048 + 32, 5632}) {
    Tensor w = test::randn({n}, uint32_t(n + 1));
    Tensor x = test::randn({n}, uint32_t(n + 2));
    w.data<float>()[3] = 1000.0f;  // extreme value in one block
    Tensor w16 = w.to(DType::F16), wb = w.to(DType::BF16), w8 = w.to(DType::Q8_0), w4 = w.to(DType::Q4_0);
    ActBuf xb(n);
    const Q8Act xq = xb.view();
    kern::kGeneric.quantize_q8_act(x.data<float>(), xq, n);
    const kern::Table& G = kern::kGeneric;
    // Sum of |terms| bounds the float rounding differences of reordered sums.
    double mag = 0;
    for (int64_t i = 0; i < n; ++i) mag += std::fabs(w.data<float>()[i] * x.data<float>()[i]);
    for (auto* T : simd_tables()) {
      const std::string t = std::string(T->name) + " ";
      const float *wp = w.data<float>(), *xp = x.data<float>();
      W.check(t + "dot_f32", T->dot_f32(wp, xp, n), G.dot_f32(wp, xp, n), mag, kDotF32);
      W.check(t + "dot_f16", T->dot_f16(w16.data<uint16_t>(), xp, n), G.dot_f16(w16.data<uint16_t>(), xp, n), mag, kDotF16);
      W.check(t + "dot_bf16", T->dot_bf16(wb.data<uint16_t>(), xp, n), G.dot_bf16(wb.data<uint16_t>(), xp, n), mag, kDotBf16);
      W.check(t + "dot_q8_0", T->dot_q8_0(w8.raw(), xq, n), G.dot_q8_0(w8.raw(), xq, n), mag, kDotQ8);
      W.check(t + "dot_q4_0", T->dot_q4_0(w4.raw(), xq, n), G.dot_q4_0(w4.raw(), xq, n), mag, kDotQ4);
    }
    // The integer paths equal the float dot of dequantized weights and activations.
    std::vector<float> wd(n), xd(n);
    dequantize_row_q4_0(w4.data<BlockQ4_0>(), wd.data(), n);
    for (int64_t b = 0; b < n / 32; ++b)
      for (int j = 0; j < 32; ++j) xd[b * 32 + j] = xq.d[b] * xq.qs[b * 32 + j];
    double exact = 0;
    for (int64_t i = 0; i < n; ++i) exact += double(wd[i]) * xd[i];
    W.check("generic dot_q4_0 vs exact", G.dot_q4_0(w4.raw(), xq, n), exact, mag, kDotQ4Exact);
  }
}

// The tile kernels of every table against the generic one, on tiles packed by PreparedWeight.
TEST(Kernels, PackedQ4TileMatchesGeneric) {
  Worst W;
  for (int64_t n : {32, 256, 2048 + 96}) {
    Tensor w = test::randn({16, n}, uint32_t(n + 5)).to(DType::Q4_0);
    ops::PreparedWeight pw(w);
    Tensor x = test::randn({n}, uint32_t(n + 6));
    ActBuf xb(n);
    const Q8Act xq = xb.view();
    kern::kGeneric.quantize_q8_act(x.data<float>(), xq, n);
    float want[16], got[16];
    kern::kGeneric.gemv_q4_0x16(pw.tiles(), xq, n, want);
    const std::vector<double> mag = row_magnitudes(w, xq, n);
    for (int r = 0; r < 16; ++r)  // and against the row dots of the unpacked matrix
      W.check("generic tile vs row dot", want[r], kern::kGeneric.dot_q4_0(w.raw() + r * (n / 32) * 18, xq, n), mag[size_t(r)], kTileQ4);
    for (auto* T : simd_tables()) {
      T->gemv_q4_0x16(pw.tiles(), xq, n, got);
      for (int r = 0; r < 16; ++r) W.check(std::string(T->name) + " tile", got[r], want[r], mag[size_t(r)], kTileQ4);
    }
  }
}


TEST(Kernels, PackedQ8TileMatchesGeneric) {
  Worst W;
  for (int64_t n : {32, 256, 2048 + 96}) {
    Tensor w = test::randn({16, n}, uint32_t(n + 7)).to(DType::Q8_0);
    w.data<BlockQ8_0>()[0].qs[0] = -128;
    ops::PreparedWeight pw(w);
    Tensor x = test::randn({n}, uint32_t(n + 8));
    ActBuf xb(n);
    const Q8Act xq = xb.view();
    kern::kGeneric.quantize_q8_act(x.data<float>(), xq, n);
    float want[16], got[16];
    kern::kGeneric.gemv_q8_0x16(pw.tiles_q8(), xq, n, want);
    const std::vector<double> mag = row_magnitudes(w, xq, n);
    for (int r = 0; r < 16; ++r)
      W.check("generic tile vs row dot", want[r], kern::kGeneric.dot_q8_0(w.raw() + r * (n / 32) * 34, xq, n), mag[size_t(r)], kTileQ8);
    for (auto* T : simd_tables()) {
      T->gemv_q8_0x16(pw.tiles_q8(), xq, n, got);
      for (int r = 0; r < 16; ++r) W.check(std::string(T->name) + " tile", got[r], want[r], mag[size_t(r)], kTileQ8);
    }
  }
}

// The two-tile kernels give each tile's values exactly as the one-tile kernel of their table
// does (a matrix of 20 rows: the second tile mostly the zero rows past m).
TEST(Kernels, TwoTileKernelsEqualOneTileKernels) {
  for (int64_t m : {32, 20})
    for (int64_t n : {32, 256, 2048 + 96}) {
      Tensor x = test::randn({n}, uint32_t(n + 9));
      ActBuf xb(n);
      const Q8Act xq = xb.view();
      kern::kGeneric.quantize_q8_act(x.data<float>(), xq, n);
      for (DType t : {DType::Q4_0, DType::Q8_0}) {
        Tensor w = test::randn({m, n}, uint32_t(m + n)).to(t);
        ops::PreparedWeight pw(w);
        ASSERT_TRUE(pw.packed());
        std::vector<const kern::Table*> tables = simd_tables();
        tables.push_back(&kern::kGeneric);
        for (auto* T : tables) {
          float one[32], two[32];
          if (t == DType::Q4_0) {
            T->gemv_q4_0x16(pw.tiles(), xq, n, one);
            T->gemv_q4_0x16(pw.tiles() + n / 32, xq, n, one + 16);
            T->gemv_q4_0x16x2(pw.tiles(), xq, n, two);
          } else {
            T->gemv_q8_0x16(pw.tiles_q8(), xq, n, one);
            T->gemv_q8_0x16(pw.tiles_q8() + n / 32, xq, n, one + 16);
            T->gemv_q8_0x16x2(pw.tiles_q8(), xq, n, two);
          }
          for (int r = 0; r < 32; ++r)
            EXPECT_EQ(two[r], one[r]) << T->name << " " << dtype_name(t) << " m=" << m << " n=" << n << " row " << r;
          for (int r = int(m); r < 32; ++r) EXPECT_EQ(two[r], 0.0f) << "rows past m are zero";
        }
      }
    }
}

// The multi-row kernels give every row exactly what the one-row kernel of their table gives it
// (1 to 8 rows: each group size of every table's row grouping; ldy wider than a tile).
TEST(Kernels, MultiRowKernelsEqualOneRowKernelPerRow) {
  constexpr int kRows = kern::kGemmRows;
  for (int64_t n : {32, 256, 2048 + 96}) {
    Tensor x = test::randn({kRows, n}, uint32_t(n + 13));
    std::vector<ActBuf> xb;
    std::vector<Q8Act> xq;
    for (int r = 0; r < kRows; ++r) xb.emplace_back(n);
    for (int r = 0; r < kRows; ++r) {
      xq.push_back(xb[size_t(r)].view());
      kern::kGeneric.quantize_q8_act(x.data<float>() + r * n, xq.back(), n);
    }
    for (DType t : {DType::Q4_0, DType::Q8_0}) {
      Tensor w = test::randn({16, n}, uint32_t(n + 14)).to(t);
      ops::PreparedWeight pw(w);
      ASSERT_TRUE(pw.packed());
      std::vector<const kern::Table*> tables = simd_tables();
      tables.push_back(&kern::kGeneric);
      for (auto* T : tables)
        for (int rows = 1; rows <= kRows; ++rows) {
          constexpr int64_t ld = 24;
          std::vector<float> many(size_t(rows * ld), -1.0f);
          if (t == DType::Q4_0) T->gemm_q4_0x16(pw.tiles(), xq.data(), rows, n, many.data(), ld);
          else T->gemm_q8_0x16(pw.tiles_q8(), xq.data(), rows, n, many.data(), ld);
          for (int r = 0; r < rows; ++r) {
            float one[16];
            if (t == DType::Q4_0) T->gemv_q4_0x16(pw.tiles(), xq[size_t(r)], n, one);
            else T->gemv_q8_0x16(pw.tiles_q8(), xq[size_t(r)], n, one);
            for (int j = 0; j < 16; ++j)
              EXPECT_EQ(many[size_t(r * ld + j)], one[j]) << T->name << " " << dtype_name(t) << " n=" << n
                                                          << " rows=" << rows << " row " << r << " col " << j;
            for (int j = 16; j < ld; ++j) EXPECT_EQ(many[size_t(r * ld + j)], -1.0f) << "past the tile's 16 values";
          }
        }
    }
  }
}

// llama.cpp's f32 summation order: bit-identical in every table, and close to the exact sum.
TEST(Kernels, DotF32GgmlOrderIsBitIdentical) {
  Worst W;
  for (int64_t n : {16, 64, 100, 2048, 2048 + 5}) {
    Tensor w = test::randn({n}, uint32_t(n + 11)), x = test::randn({n}, uint32_t(n + 12));
    const float want = kern::kGeneric.dot_f32_ggml(w.data<float>(), x.data<float>(), n);
    for (auto* T : simd_tables()) EXPECT_EQ(T->dot_f32_ggml(w.data<float>(), x.data<float>(), n), want) << T->name << " n=" << n;
    double exact = 0, mag = 0;
    for (int64_t i = 0; i < n; ++i) exact += double(w.data<float>()[i]) * x.data<float>()[i], mag += std::fabs(w.data<float>()[i] * x.data<float>()[i]);
    W.check("dot_f32_ggml vs exact", want, exact, mag, kGgmlVsExact);
  }
}

TEST(Kernels, ExpWithinTwoUlpEverywhere) {
  Worst W;
  // Every table (generic included) against exp in double over the whole useful range, the
  // tails of a row that is not a multiple of the vector width, and the edges.
  std::vector<float> x;
  for (int i = 0; i <= 100003; ++i) x.push_back(-87.0f + 175.0f * float(i) / 100003.0f);  // [-87, 88]
  for (float e : {-1000.0f, -88.0f, -INFINITY, 0.0f, 1e-8f, -1e-8f}) x.push_back(e);
  std::vector<const kern::Table*> all = simd_tables();
  all.push_back(kern::for_isa(0));
  for (const kern::Table* T : all) {
    std::vector<float> y(x.size());
    T->exp_affine(x.data(), 1.0f, 0.0f, y.data(), int64_t(x.size()));
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double want = std::exp(double(x[i]));
      if (want < 1.2e-38) {  // below the normal range: 0 (or exp's denormal)
        EXPECT_LE(y[i], 1.2e-38f) << T->name << " x=" << x[i];
        continue;
      }
      const double ulp = std::nextafter(float(want), INFINITY) - float(want);
      worst = std::max(worst, std::abs(double(y[i]) - want) / ulp);
    }
    std::printf("%s: exp within %.2f ulp\n", T->name, worst);
    EXPECT_LE(worst, 2.0) << T->name;
    // a x + b, and the sum
    std::vector<float> z(7);
    T->exp_affine(x.data() + 500, -0.5f, 2.0f, z.data(), 7);
    double s = 0;
    for (int i = 0; i < 7; ++i) {
      const double e = std::exp(-0.5 * x[size_t(500 + i)] + 2.0);
      W.check(std::string(T->name) + " exp_affine", z[size_t(i)], e, e, kExpAffine);
    }
    for (int i = 0; i < 1001; ++i) s += std::exp(0.01 * x[size_t(50000 + i)] - 1.0);
    W.check(std::string(T->name) + " sum_exp_affine", T->sum_exp_affine(x.data() + 50000, 0.01f, -1.0f, 1001), s, s, kSumExp);
  }
}

TEST(Kernels, AdamWSameBitsInEveryTable) {
  // The SIMD updates against the generic one, bit for bit, over several steps (moments carried),
  // with a row that is not a multiple of the vector width, zero and huge gradients.
  const int64_t n = 1003;
  std::vector<float> w0(n), g(n);
  uint32_t s = 12345;
  auto next = [&] { return (s = s * 1664525u + 1013904223u, float(int32_t(s >> 8) - (1 << 23)) / float(1 << 23)); };
  for (int64_t i = 0; i < n; ++i) w0[size_t(i)] = next();
  const kern::Table* ref = kern::for_isa(0);
  const std::vector<const kern::Table*> tables = simd_tables();
  if (tables.empty()) GTEST_SKIP() << "not tested: avx2, avx512 (CPU lacks them)";
  for (const kern::Table* T : tables) {
    std::vector<float> w = w0, m(n, 0.0f), v(n, 0.0f), wr = w0, mr(n, 0.0f), vr(n, 0.0f);
    for (int step = 1; step <= 4; ++step) {
      for (int64_t i = 0; i < n; ++i) g[size_t(i)] = next() * (i % 97 == 0 ? 1e4f : 1.0f) * (i % 89 == 0 ? 0.0f : 1.0f);
      const double bc1 = 1.0 - std::pow(0.9, step), bc2 = 1.0 - std::pow(0.999, step);
      const kern::AdamWStep c{float(1.0 - 1e-3 * 0.01), 0.9f, 0.999f, float(std::sqrt(bc2)), 1e-8f, float(1e-3 / bc1)};
      T->adamw(w.data(), m.data(), v.data(), g.data(), n, c);
      ref->adamw(wr.data(), mr.data(), vr.data(), g.data(), n, c);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(w[size_t(i)], wr[size_t(i)]) << T->name << " step " << step << " i " << i;
        ASSERT_EQ(m[size_t(i)], mr[size_t(i)]) << T->name << " step " << step << " i " << i;
        ASSERT_EQ(v[size_t(i)], vr[size_t(i)]) << T->name << " step " << step << " i " << i;
      }
    }
    EXPECT_NE(w, w0) << "the update moved the weights";
  }
}
