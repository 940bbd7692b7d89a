#pragma once
// Row conversion between f32 and every storage dtype. Quantizers reproduce llama.cpp's reference
// quantizers bit for bit, so files written here match files written by llama.cpp.
#include <cstdint>

#include "ocellus/core/dtype.h"

namespace ocellus {

// n must be a multiple of the block size for quantized types.
void quantize_row(DType t, const float* x, void* dst, int64_t n);
void dequantize_row(DType t, const void* src, float* y, int64_t n);

void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n);
void quantize_row_q4_0(const float* x, BlockQ4_0* y, int64_t n);
void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t n);
void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t n);

}  // namespace ocellus
