// Portable kernels: plain C++, the reference for the SIMD tables and the fallback on CPUs
// without AVX2.
#include <math.h>

#include "ocellus/core/dtype.h"
#include "ops/kernels/kernels.h"
#include "ocellus/core/kquant.h"

namespace ocellus::kern {
namespace {

void f16_to_f32(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = s_fp16_to_f32(x[i]);
}
void f32_to_f16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = ocellus::f32_to_fp16(x[i]);
}
void bf16_to_f32(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = s_bf16_to_f32(x[i]);
}
void dequant_q8_0(const void* x, float* y, int64_t n) {
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(x);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = s_fp16_to_f32(b[i].d);
    for (int j = 0; j < kQK; ++j) y[i * kQK + j] = d * float(b[i].qs[j]);
  }
}
void dequant_q4_0(const void* x, float* y, int64_t n) {
  const BlockQ4_0* b = static_cast<const BlockQ4_0*>(x);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = s_fp16_to_f32(b[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[i * kQK + j] = d * float(int(b[i].qs[j] & 0x0f) - 8);
      y[i * kQK + j + kQK / 2] = d * float(int(b[i].qs[j] >> 4) - 8);
    }
  }
}
void quantize_q8_act(const float* x, Q8Act y, int64_t n) {
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = fmaxf(amax, fabsf(x[j]));
    // As llama.cpp's q8_0 blocks: the scale kept at f16 precision, values from 127 / amax.
    const float d = s_fp16_to_f32(ocellus::f32_to_fp16(amax / 127.0f)), id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      int q = int(nearbyintf(x[j] * id));
      y.qs[i * kQK + j] = int8_t(q);
      sum += q;
    }
    y.d[i] = d;
    y.s[i] = d * float(sum);
  }
}
float dot_f32(const float* w, const float* x, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += w[i] * x[i];
  return s;
}
float dot_f32_ggml(const float* w, const float* x, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int t = 0; t < 16; ++t) acc[t] = fmaf(w[i + t], x[i + t], acc[t]);
  float h[8], q[4];
  for (int t = 0; t < 8; ++t) h[t] = acc[t] + acc[t + 8];
  for (int t = 0; t < 4; ++t) q[t] = h[t] + h[t + 4];
  float s = (q[0] + q[2]) + (q[1] + q[3]);
  for (; i < n; ++i) s = fmaf(w[i], x[i], s);  // the tail fused everywhere, so every table agrees
  return s;
}
float dot_f16(const uint16_t* w, const float* x, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += s_fp16_to_f32(w[i]) * x[i];
  return s;
}
float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += s_bf16_to_f32(w[i]) * x[i];
  return s;
}
float dot_q8_0(const void* wv, Q8Act x, int64_t n) {
  const BlockQ8_0* w = static_cast<const BlockQ8_0*>(wv);
  float s = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int sumi = 0;
    for (int j = 0; j < kQK; ++j) sumi += int(w[i].qs[j]) * int(x.qs[i * kQK + j]);
    s += float(sumi) * (s_fp16_to_f32(w[i].d) * x.d[i]);
  }
  return s;
}
float dot_q4_0(const void* wv, Q8Act x, int64_t n) {
  const BlockQ4_0* w = static_cast<const BlockQ4_0*>(wv);
  float s = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int sumi = 0;  // nibbles as unsigned 0..15; the -8 is applied through x.s
    for (int j = 0; j < kQK / 2; ++j)
      sumi += int(w[i].qs[j] & 0x0f) * int(x.qs[i * kQK + j]) +
              int(w[i].qs[j] >> 4) * int(x.qs[i * kQK + j + kQK / 2]);
    const float dw = s_fp16_to_f32(w[i].d);
    s += float(sumi) * (dw * x.d[i]) - 8.0f * dw * x.s[i];
  }
  return s;
}

void gemv_q4_0x16(const BlockQ4_0x16* w, Q8Act x, int64_t n, float* y) {
  for (int r = 0; r < kPackRows; ++r) y[r] = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    const int8_t* xb = x.qs + i * kQK;
    for (int r = 0; r < kPackRows; ++r) {
      int sumi = 0;  // nibbles unsigned; the -8 through x.s
      for (int c = 0; c < 4; ++c)
        for (int t = 0; t < 4; ++t) {
          const uint8_t q = w[i].qs[c][r * 4 + t];
          sumi += int(q & 0x0f) * int(xb[4 * c + t]) + int(q >> 4) * int(xb[16 + 4 * c + t]);
        }
      const float dw = s_fp16_to_f32(w[i].d[r]);
      y[r] += float(sumi) * (dw * x.d[i]) - 8.0f * dw * x.s[i];
    }
  }
}

void gemv_q8_0x16(const BlockQ8_0x16* w, Q8Act x, int64_t n, float* y) {
  for (int r = 0; r < kPackRows; ++r) y[r] = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    const int8_t* xb = x.qs + i * kQK;
    for (int r = 0; r < kPackRows; ++r) {
      int sumi = 0;
      for (int c = 0; c < 8; ++c)
        for (int t = 0; t < 4; ++t) sumi += int(w[i].qs[c][r * 4 + t]) * int(xb[4 * c + t]);
      y[r] += float(sumi) * (s_fp16_to_f32(w[i].d[r]) * x.d[i]);
    }
  }
}

void exp_affine(const float* x, float a, float b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = expf(a * x[i] + b);
}
float sum_exp_affine(const float* x, float a, float b, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += expf(a * x[i] + b);
  return s;
}

void adamw(float* w, float* m, float* v, const float* g, int64_t n, const AdamWStep& c) {
  for (int64_t i = 0; i < n; ++i) {
    w[i] *= c.decay;
    m[i] += (g[i] - m[i]) * (1.0f - c.b1);  // lerp
    v[i] = v[i] * c.b2 + (1.0f - c.b2) * g[i] * g[i];
    const float denom = sqrtf(v[i]) / c.bc2_sqrt + c.eps;
    w[i] += -c.step * (m[i] / denom);
  }
}

void gemv_q4_0x16x2(const BlockQ4_0x16* w, Q8Act x, int64_t n, float* y) {
  gemv_q4_0x16(w, x, n, y);
  gemv_q4_0x16(w + n / kQK, x, n, y + kPackRows);
}
void gemv_q8_0x16x2(const BlockQ8_0x16* w, Q8Act x, int64_t n, float* y) {
  gemv_q8_0x16(w, x, n, y);
  gemv_q8_0x16(w + n / kQK, x, n, y + kPackRows);
}

// The reference for the multi-row kernels: the one-row kernel per row.
void gemm_q4_0x16(const BlockQ4_0x16* w, const Q8Act* x, int rows, int64_t n, float* y, int64_t ldy) {
  for (int r = 0; r < rows; ++r) gemv_q4_0x16(w, x[r], n, y + r * ldy);
}
void gemm_q8_0x16(const BlockQ8_0x16* w, const Q8Act* x, int rows, int64_t n, float* y, int64_t ldy) {
  for (int r = 0; r < rows; ++r) gemv_q8_0x16(w, x[r], n, y + r * ldy);
}

// A tile's rows one by one through the reference's steps, for each activation row.
template <DType T, typename Tile, void (*Unpack)(const Tile&, int, KUnpacked&)>
void gemm_k_tile(const Tile* w, const BlockQ8K* x, int64_t xs, int rows, int64_t n, float* y, int64_t ldy) {
  KUnpacked u;
  for (int a = 0; a < rows; ++a)
    for (int r = 0; r < int(kKPackRows); ++r) {
      KDot dot;
      for (int64_t i = 0; i < n / kQK_K; ++i) {
        Unpack(w[i], r, u);
        dot.add(T, u, x[a * xs + i]);
      }
      y[a * ldy + r] = dot.result(T);
    }
}

template <DType T>
void gemm_k(const void* w, const BlockQ8K* x, int64_t xs, int rows, int64_t n, float* y, int64_t ldy) {
  for (int r = 0; r < rows; ++r) y[r * ldy] = dot_k_q8_K(T, w, x + r * xs, n);
}

}  // namespace

const Table kGeneric = {"generic", f16_to_f32, f32_to_f16, bf16_to_f32, dequant_q8_0,
                        dequant_q4_0, quantize_q8_act, dot_f32, dot_f32_ggml, dot_f16, dot_bf16,
                        dot_q8_0, dot_q4_0, gemv_q4_0x16, gemv_q8_0x16, gemv_q4_0x16x2, gemv_q8_0x16x2, gemm_q4_0x16, gemm_q8_0x16, gemm_k<DType::Q2_K>, gemm_k<DType::Q3_K>, gemm_k<DType::Q4_K>, gemm_k<DType::Q5_K>, gemm_k<DType::Q6_K>,
                        gemm_k_tile<DType::Q4_K, BlockQ4Kx8, unpack_q4_Kx8_row>, gemm_k_tile<DType::Q6_K, BlockQ6Kx8, unpack_q6_Kx8_row>, exp_affine, sum_exp_affine, adamw};

}  // namespace ocellus::kern
