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

// Σ w x over n (a multiple of 256) for a K-quant row w and q8_K activations: per super-block
// d_x (d Σ_s sc_s Σ q x - dmin Σ_s mn_s Σ x), the inner sums in integers.
float dot_k_q8_K(DType t, const void* w, const BlockQ8K* x, int64_t n);

}  // namespace ocellus
