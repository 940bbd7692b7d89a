// AVX-512 (F, BW, VL, DQ, VNNI) kernels: 512-bit float loops; the byte dot products use VNNI on
// 256-bit registers, one q8_0 / q4_0 block per instruction.
#include <immintrin.h>

#include "ops/kernels/kernels.h"

namespace ocellus::kern {
namespace {

#define OCELLUS_VNNI 1
#include "ops/kernels/kernels_x86.inc"

static inline __m512 load_f16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
static inline __m512 load_bf16(const uint16_t* p) {
  __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

void f16_to_f32(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, load_f16(x + i));
  for (; i < n; ++i) y[i] = _cvtsh_ss(x[i]);
}
void f32_to_f16(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i),
                        _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}
void bf16_to_f32(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, load_bf16(x + i));
  for (; i < n; ++i) y[i] = s_bf16_to_f32(x[i]);
}

// One weight-row dot product with four independent 16-wide accumulators. LOAD(i) yields the
// weights i..i+15 as floats; TAIL(i) one weight as a float.
#define OCELLUS_DOT512(LOAD, TAIL)                                               \
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                     \
  int64_t i = 0;                                                                  \
  for (; i + 64 <= n; i += 64) {                                                  \
    a0 = _mm512_fmadd_ps(LOAD(i), _mm512_loadu_ps(x + i), a0);                    \
    a1 = _mm512_fmadd_ps(LOAD(i + 16), _mm512_loadu_ps(x + i + 16), a1);          \
    a2 = _mm512_fmadd_ps(LOAD(i + 32), _mm512_loadu_ps(x + i + 32), a2);          \
    a3 = _mm512_fmadd_ps(LOAD(i + 48), _mm512_loadu_ps(x + i + 48), a3);          \
  }                                                                               \
  for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(LOAD(i), _mm512_loadu_ps(x + i), a0); \
  float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))); \
  for (; i < n; ++i) s += TAIL(i) * x[i];                                         \
  return s;

float dot_f32(const float* w, const float* x, int64_t n) {
#define LOAD(i) _mm512_loadu_ps(w + (i))
#define TAIL(i) w[i]
  OCELLUS_DOT512(LOAD, TAIL)
#undef LOAD
#undef TAIL
}
float dot_f16(const uint16_t* w, const float* x, int64_t n) {
#define LOAD(i) load_f16(w + (i))
#define TAIL(i) _cvtsh_ss(w[i])
  OCELLUS_DOT512(LOAD, TAIL)
#undef LOAD
#undef TAIL
}
float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
#define LOAD(i) load_bf16(w + (i))
#define TAIL(i) s_bf16_to_f32(w[i])
  OCELLUS_DOT512(LOAD, TAIL)
#undef LOAD
#undef TAIL
}

}  // namespace

const Table kAvx512 = {"avx512", f16_to_f32, f32_to_f16, bf16_to_f32, x86_dequant_q8_0,
                       x86_dequant_q4_0, x86_quantize_q8_act, dot_f32, dot_f16, dot_bf16,
                       x86_dot_q8_0, x86_dot_q4_0};

}  // namespace ocellus::kern
