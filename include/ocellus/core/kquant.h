#pragma once
// llama.cpp's K-quants (q2_K ... q6_K): a super-block unpacked to integers, dequantization, the
// 8-bit activations (q8_K) llama.cpp multiplies them with, and that product. These are the
// references: dequantization gives llama.cpp's floats bit for bit, and the product's integer
// sums are exact.
#include <cstdint>

#include "ocellus/core/dtype.h"

namespace ocellus {

// One super-block as integers: x[e] = d * sc[s] * q[e] - dmin * mn[s] for e in sub-block
// s = e / sub. Symmetric types (q3_K, q6_K) fold their offset into q and have mn = 0.
struct KUnpacked {
  int8_t q[kQK_K];
  int32_t sc[16], mn[16];
  float d, dmin;
  int sub;  // elements per sub-block: 16 or 32
};
void unpack_k_block(DType t, const void* block, KUnpacked& u);

void dequantize_row_k(DType t, const void* src, float* y, int64_t n);

// A row of n values (a multiple of 256) as K-quant super-blocks of type t, the bytes llama.cpp's
// reference quantizers (llama-quantize without an importance matrix) write.
void quantize_row_k(DType t, const float* x, void* dst, int64_t n);

// llama.cpp's quantize_row_q8_K_ref: per 256 values, d = -max / 127 where max is the value of
// largest magnitude (its sign kept), qs = round(x / d) capped at 127, bsums per 16.
void quantize_row_q8_K(const float* x, BlockQ8K* y, int64_t n);

// A row's block moved into row r of an 8-row tile block (layouts in core/blocks.h), and back
// out as integers.
void pack_tile_row(const BlockQ4K& b, int r, BlockQ4Kx8& o);
void pack_tile_row(const BlockQ6K& b, int r, BlockQ6Kx8& o);
void unpack_q4_Kx8_row(const BlockQ4Kx8& t, int r, KUnpacked& u);
void unpack_q6_Kx8_row(const BlockQ6Kx8& t, int r, KUnpacked& u);

// Σ w x over n (a multiple of 256) for a K-quant row w and q8_K activations, the integer sums
// exact and the float steps those of llama.cpp's x86 kernels (ggml_vec_dot_q*_K_q8_K, AVX2), whose
// logits depend on them: per super-block, eight int32 lanes (lane l: elements 4l .. 4l + 3 of
// every 32, times their sub-block's scale) enter eight f32 lanes by a fused multiply-add with
// d_x d; the mins by d_x dmin (q2_K: into the same lanes first; q4_K: four lanes of paired
// sub-blocks; q5_K: one sum); the lanes summed as (0+4 + 2+6) + (1+5 + 3+7) at the end.
float dot_k_q8_K(DType t, const void* w, const BlockQ8K* x, int64_t n);

// The same steps a super-block at a time (the product of a row held in another layout).
struct KDot {
  float acc[8] = {0}, acc_m[4] = {0}, summs = 0.0f;
  void add(DType t, const KUnpacked& u, const BlockQ8K& xb);
  float result(DType t) const;
};

}  // namespace ocellus
