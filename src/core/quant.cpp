#include "ocellus/core/quant.h"
#include "ocellus/core/kquant.h"

#include <algorithm>
#include <cmath>

#include "ocellus/core/error.h"
#include "ops/kernels/kernels.h"

namespace ocellus {

static void check_blocks(int64_t n, const char* what) {
  OCELLUS_CHECK(n % kQK == 0, what, ": row length ", n, " is not a multiple of ", kQK);
}

void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
  check_blocks(n, "quantize q8_0");
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d ? 1.0f / d : 0.0f;
    y[b].d = f32_to_fp16(d);
    for (int j = 0; j < kQK; ++j) y[b].qs[j] = int8_t(std::roundf(x[j] * id));
  }
}

void quantize_row_q4_0(const float* x, BlockQ4_0* y, int64_t n) {
  check_blocks(n, "quantize q4_0");
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    // The scale maps the value of largest magnitude, with its sign, to -8.
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK; ++j)
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    const float d = max / -8.0f;
    const float id = d ? 1.0f / d : 0.0f;
    y[b].d = f32_to_fp16(d);
    for (int j = 0; j < kQK / 2; ++j) {
      uint8_t lo = uint8_t(std::min(15, int(int8_t(x[j] * id + 8.5f))));
      uint8_t hi = uint8_t(std::min(15, int(int8_t(x[j + kQK / 2] * id + 8.5f))));
      y[b].qs[j] = uint8_t(lo | (hi << 4));
    }
  }
}

void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t n) {
  check_blocks(n, "dequantize q8_0");
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float d = fp16_to_f32(x[b].d);
    for (int j = 0; j < kQK; ++j) y[b * kQK + j] = d * float(x[b].qs[j]);
  }
}

void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t n) {
  check_blocks(n, "dequantize q4_0");
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float d = fp16_to_f32(x[b].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[b * kQK + j] = d * float(int(x[b].qs[j] & 0x0f) - 8);
      y[b * kQK + j + kQK / 2] = d * float(int(x[b].qs[j] >> 4) - 8);
    }
  }
}

void quantize_row(DType t, const float* x, void* dst, int64_t n) {
  switch (t) {
    case DType::F32: std::copy(x, x + n, static_cast<float*>(dst)); return;
    case DType::F16: kern::active().f32_to_f16(x, static_cast<uint16_t*>(dst), n); return;
    case DType::BF16: {
      auto* y = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
      return;
    }
    case DType::Q8_0: quantize_row_q8_0(x, static_cast<BlockQ8_0*>(dst), n); return;
    case DType::Q4_0: quantize_row_q4_0(x, static_cast<BlockQ4_0*>(dst), n); return;
    default:
      if (is_k_quant(t)) return quantize_row_k(t, x, dst, n);
  }
  fail("quantize: converting to ", dtype_name(t), " is not supported");
}

void dequantize_row(DType t, const void* src, float* y, int64_t n) {
  switch (t) {
    case DType::F32: {
      const float* x = static_cast<const float*>(src);
      std::copy(x, x + n, y);
      return;
    }
    case DType::F16: kern::active().f16_to_f32(static_cast<const uint16_t*>(src), y, n); return;
    case DType::BF16: kern::active().bf16_to_f32(static_cast<const uint16_t*>(src), y, n); return;
    case DType::Q8_0: kern::active().dequant_q8_0(src, y, n); return;
    case DType::Q4_0: kern::active().dequant_q4_0(src, y, n); return;
    default:
      if (is_k_quant(t)) return dequantize_row_k(t, src, y, n);
  }
  fail("dequantize: unsupported dtype");
}

}  // namespace ocellus
