#pragma once
// Inner-loop kernels, one table per ISA; the active table is chosen at run time from the CPU's
// features (core/cpu.h). Every table computes the same functions; kernels_generic.cpp is the
// portable reference the others are tested against.
//
// Kernel files are compiled with ISA flags and include only this header and <immintrin.h>:
// helpers here are `static inline` so none of their code is shared across ISAs by the linker.
#include <stdint.h>
#include <string.h>

#include "ocellus/core/blocks.h"

namespace ocellus {
enum class DType : uint8_t;  // core/dtype.h (declared here: this header takes no C++ library headers)
}

namespace ocellus::kern {

struct AdamWStep {
  float decay, b1, b2, bc2_sqrt, eps, step;
};

// Most activation rows one gemm_* call takes.
constexpr int kGemmRows = 8;

struct Table {
  const char* name;
  // Row conversions.
  void (*f16_to_f32)(const uint16_t* x, float* y, int64_t n);
  void (*f32_to_f16)(const float* x, uint16_t* y, int64_t n);
  void (*bf16_to_f32)(const uint16_t* x, float* y, int64_t n);
  void (*dequant_q8_0)(const void* x, float* y, int64_t n);
  void (*dequant_q4_0)(const void* x, float* y, int64_t n);
  void (*quantize_q8_act)(const float* x, Q8Act y, int64_t n);
  // Dot product of one weight row (length n) with one activation row.
  float (*dot_f32)(const float* w, const float* x, int64_t n);
  // Σ w x in llama.cpp's order on AVX-512 (tinyBLAS): lane t of 16 accumulates w[16j+t] x[16j+t]
  // by FMA, the lanes are summed as (t, t+8) -> (t, t+4) -> (0+2) + (1+3), the tail after that.
  // Bit-identical in every table.
  float (*dot_f32_ggml)(const float* w, const float* x, int64_t n);
  float (*dot_f16)(const uint16_t* w, const float* x, int64_t n);
  float (*dot_bf16)(const uint16_t* w, const float* x, int64_t n);
  float (*dot_q8_0)(const void* w, Q8Act x, int64_t n);
  float (*dot_q4_0)(const void* w, Q8Act x, int64_t n);
  // y[0..15] = the 16 rows of a q4_0x16 tile (n columns) times one activation row.
  void (*gemv_q4_0x16)(const BlockQ4_0x16* w, Q8Act x, int64_t n, float* y);
  void (*gemv_q8_0x16)(const BlockQ8_0x16* w, Q8Act x, int64_t n, float* y);
  // The same for two adjacent tiles (w, and w + n/32 blocks: rows 0-31) in one pass over the
  // activations, y[0..31]; each tile's values bit-identical to the one-tile kernel's.
  void (*gemv_q4_0x16x2)(const BlockQ4_0x16* w, Q8Act x, int64_t n, float* y);
  void (*gemv_q8_0x16x2)(const BlockQ8_0x16* w, Q8Act x, int64_t n, float* y);
  // One tile times `rows` activation rows (1 <= rows <= kGemmRows): y[r * ldy + 0..15] for row
  // r, each row's values bit-identical to the one-tile gemv's for that row (so a sequence's
  // numbers do not depend on what is batched beside it). The tile is read and unpacked once for
  // all the rows: batched decoding and prefill.
  void (*gemm_q4_0x16)(const BlockQ4_0x16* w, const Q8Act* x, int rows, int64_t n, float* y, int64_t ldy);
  void (*gemm_q8_0x16)(const BlockQ8_0x16* w, const Q8Act* x, int rows, int64_t n, float* y, int64_t ldy);
  // One K-quant weight row (n a multiple of 256) times `rows` q8_K activation rows (1 <= rows <=
  // kGemmRows; row r at x + r * xs blocks): y[r * ldy]. Each value bit-identical to the reference
  // (core/kquant.h dot_k_q8_K; integer sums exact, the same float steps after them); a block is
  // unpacked once for several rows (prefill, batched decode). rows = 1 is decode's product.
  void (*gemm_q2_K)(const void* w, const BlockQ8K* x, int64_t xs, int rows, int64_t n, float* y, int64_t ldy);
  void (*gemm_q3_K)(const void* w, const BlockQ8K* x, int64_t xs, int rows, int64_t n, float* y, int64_t ldy);
  void (*gemm_q4_K)(const void* w, const BlockQ8K* x, int64_t xs, int rows, int64_t n, float* y, int64_t ldy);
  void (*gemm_q5_K)(const void* w, const BlockQ8K* x, int64_t xs, int rows, int64_t n, float* y, int64_t ldy);
  void (*gemm_q6_K)(const void* w, const BlockQ8K* x, int64_t xs, int rows, int64_t n, float* y, int64_t ldy);
  // The 8 rows of a q4_K / q6_K tile (n columns) times `rows` q8_K activation rows (1 <= rows <=
  // kGemmRows; row r at x + r * xs blocks): y[r * ldy + 0..7], each value bit-identical to the K
  // product of that row in its file layout (gemm_q4_K / gemm_q6_K).
  void (*gemm_q4_Kx8)(const BlockQ4Kx8* w, const BlockQ8K* x, int64_t xs, int rows, int64_t n, float* y, int64_t ldy);
  void (*gemm_q6_Kx8)(const BlockQ6Kx8* w, const BlockQ8K* x, int64_t xs, int rows, int64_t n, float* y, int64_t ldy);
  // y = exp(a x + b) elementwise (within 2 ulp of exp; 0 below exp's normal range), and the sum
  // of those values: the softmaxes of training (cross-entropy, SiLU) without a libm call each.
  void (*exp_affine)(const float* x, float a, float b, float* y, int64_t n);
  float (*sum_exp_affine)(const float* x, float a, float b, int64_t n);
  // One AdamW update of n parameters, in torch.optim.AdamW's float32 arithmetic and order (no
  // fused multiply-adds: every table gives the same bits): w *= decay; m += (g - m)(1 - b1);
  // v = v b2 + (1 - b2) g g; w += -step (m / (sqrt(v) / bc2_sqrt + eps)).
  void (*adamw)(float* w, float* m, float* v, const float* g, int64_t n, const AdamWStep& c);
};

// How the tile kernels prefetch the weights they stream (chosen once, from the CPU's vendor, or
// OCELLUS_PREFETCH=l2|nta): the same hint is best on one vendor and worst on the other.
enum TilePrefetch : int { kPrefetchL2 = 0, kPrefetchNta = 1 };
extern const int g_tile_prefetch;

extern const Table kGeneric;
extern const Table kAvx2;
extern const Table kAvx512;

const Table& active();          // the table of ocellus::active_isa()
const Table* for_isa(int isa);  // nullptr where the CPU lacks the ISA

// A table's K-quant product for a K type (q2_K ... q6_K; nullptr for any other type).
using GemmK = void (*)(const void* w, const BlockQ8K* x, int64_t xs, int rows, int64_t n, float* y, int64_t ldy);
GemmK gemm_k(const Table& T, DType t);

// ---- scalar helpers shared by the kernel files (internal linkage in each) -------------------
static inline float s_fp16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, u;
  if (exp == 0) {
    float v = float(mant) * 0x1p-24f;
    return sign ? -v : v;
  }
  u = exp == 31 ? (sign | 0x7f800000u | (mant << 13)) : (sign | ((exp + 112) << 23) | (mant << 13));
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline float s_bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

// Calls f(RowCount<R>{}, r0) for groups of rows [r0, r0 + R) covering [0, rows): groups of Max,
// then 4, 2, 1 (Max a power of two). A kernel templated on its row count R, with its
// accumulators in registers, then serves any count with log2(Max) + 1 instantiations.
template <int R>
struct RowCount {
  static constexpr int value = R;
};
template <int Max, typename F>
static inline void for_row_groups(int rows, F f) {
  int r0 = 0;
  for (; r0 + Max <= rows; r0 += Max) f(RowCount<Max>{}, r0);
  if constexpr (Max > 4) if (r0 + 4 <= rows) f(RowCount<4>{}, r0), r0 += 4;
  if constexpr (Max > 2) if (r0 + 2 <= rows) f(RowCount<2>{}, r0), r0 += 2;
  if constexpr (Max > 1) if (r0 < rows) f(RowCount<1>{}, r0);
}

}  // namespace ocellus::kern
