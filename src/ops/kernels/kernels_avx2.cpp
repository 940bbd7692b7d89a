// AVX2 + FMA + F16C kernels (Haswell and later, Zen).
#include <immintrin.h>

#include "ops/kernels/kernels.h"

namespace ocellus::kern {
namespace {

#define OCELLUS_VNNI 0
#include "ops/kernels/kernels_x86.inc"

void f16_to_f32(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
  for (; i < n; ++i) y[i] = _cvtsh_ss(x[i]);
}
void f32_to_f16(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}
static inline __m256 load_bf16(const uint16_t* p) {
  __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
void bf16_to_f32(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_bf16(x + i));
  for (; i < n; ++i) y[i] = s_bf16_to_f32(x[i]);
}

// One weight-row dot product with four independent 8-wide accumulators (hiding the FMA
// latency). LOAD(i) yields weights i..i+7 as floats; TAIL(i) one weight as a float.
#define OCELLUS_DOT256(LOAD, TAIL)                                                         \
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                               \
  int64_t i = 0;                                                                            \
  for (; i + 32 <= n; i += 32) {                                                            \
    a0 = _mm256_fmadd_ps(LOAD(i), _mm256_loadu_ps(x + i), a0);                              \
    a1 = _mm256_fmadd_ps(LOAD(i + 8), _mm256_loadu_ps(x + i + 8), a1);                      \
    a2 = _mm256_fmadd_ps(LOAD(i + 16), _mm256_loadu_ps(x + i + 16), a2);                    \
    a3 = _mm256_fmadd_ps(LOAD(i + 24), _mm256_loadu_ps(x + i + 24), a3);                    \
  }                                                                                         \
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(LOAD(i), _mm256_loadu_ps(x + i), a0);     \
  float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));          \
  for (; i < n; ++i) s += TAIL(i) * x[i];                                                   \
  return s;

float dot_f32(const float* w, const float* x, int64_t n) {
#define LOAD(i) _mm256_loadu_ps(w + (i))
#define TAIL(i) w[i]
  OCELLUS_DOT256(LOAD, TAIL)
#undef LOAD
#undef TAIL
}
float dot_f16(const uint16_t* w, const float* x, int64_t n) {
#define LOAD(i) _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + (i))))
#define TAIL(i) _cvtsh_ss(w[i])
  OCELLUS_DOT256(LOAD, TAIL)
#undef LOAD
#undef TAIL
}
float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
#define LOAD(i) load_bf16(w + (i))
#define TAIL(i) s_bf16_to_f32(w[i])
  OCELLUS_DOT256(LOAD, TAIL)
#undef LOAD
#undef TAIL
}

}  // namespace

const Table kAvx2 = {"avx2", f16_to_f32, f32_to_f16, bf16_to_f32, x86_dequant_q8_0,
                     x86_dequant_q4_0, x86_quantize_q8_act, dot_f32, dot_f16, dot_bf16,
                     x86_dot_q8_0, x86_dot_q4_0};

}  // namespace ocellus::kern
