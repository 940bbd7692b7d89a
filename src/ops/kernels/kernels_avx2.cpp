// AVX2 + FMA + F16C kernels (Haswell and later, Zen).
#include <immintrin.h>
#include <math.h>

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
// Lanes 0-7 and 8-15 of llama.cpp's 16-lane accumulator in two registers; same FMAs, same tree.
float dot_f32_ggml(const float* w, const float* x, int64_t n) {
  __m256 lo = _mm256_setzero_ps(), hi = lo;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    lo = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), lo);
    hi = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), hi);
  }
  const __m256 h = _mm256_add_ps(hi, lo);                                                 // (t, t+8)
  const __m128 q = _mm_add_ps(_mm256_extractf128_ps(h, 1), _mm256_castps256_ps128(h));    // (t, t+4)
  const __m128 r = _mm_add_ps(q, _mm_movehl_ps(q, q));                                    // (0+2), (1+3)
  float s = _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)));
  for (; i < n; ++i) s = fmaf(w[i], x[i], s);  // the tail fused everywhere, so every table agrees
  return s;
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

static float x86_dot_q8_0(const void* wv, Q8Act x, int64_t n) {
  float corr;
  return dot_blocks(static_cast<const BlockQ8_0*>(wv), x, n / kQK, Q8Block{}, &corr);
}

static float x86_dot_q4_0(const void* wv, Q8Act x, int64_t n) {
  float corr;
  const float s = dot_blocks(static_cast<const BlockQ4_0*>(wv), x, n / kQK, Q4Block{}, &corr);
  return s - 8.0f * corr;
}

// A q4_0x16 tile times one activation row, rows 0-7 in one register and 8-15 in another. A
// block's eight maddubs results (4 chunks x 2 nibble halves; each int16 lane a sum of 2 products
// of a nibble <= 15 and an int8, |.| <= 3840) are summed in int16 — 16 products per lane, at most
// 30720 in magnitude for any int8 activations, so exact — and widened once (madd with ones) per
// register, not once per maddubs: 1.69 -> 2.0 G blocks/s on one Zen 3 core, the same bits.
//
// T tiles (1 or 2: adjacent, n/32 blocks apart) share each activation broadcast; a tile's
// arithmetic is the same for T = 1 and 2.
template <int T>
static inline void q4_tiles(const BlockQ4_0x16* w, Q8Act x, int64_t n, float* y) {
  const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  const int64_t nb = n / kQK;
  // Few registers live across blocks (16 ymm in all): the -8 offset of the nibbles is folded
  // into each block's factor, acc += dw (sumi dx - 8 sx), and a block's low- and high-nibble
  // products share one int16 sum (wrapping adds: any order gives the exact total).
  __m256 acc0[T], acc1[T];
  for (int t = 0; t < T; ++t) acc0[t] = acc1[t] = _mm256_setzero_ps();
#pragma GCC unroll 2
  for (int64_t i = 0; i < nb; ++i) {
    const int8_t* xb = x.qs + i * kQK;
    prefetch_tiles<T>(w, nb, i);
    __m256i p0[T], p1[T];  // rows 0-7 / 8-15
    for (int t = 0; t < T; ++t) p0[t] = p1[t] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      int32_t xl, xh;
      memcpy(&xl, xb + 4 * c, 4);
      memcpy(&xh, xb + 16 + 4 * c, 4);
      const __m256i vxl = _mm256_set1_epi32(xl), vxh = _mm256_set1_epi32(xh);
      for (int t = 0; t < T; ++t) {
        const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[t * nb + i].qs[c]));
        const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[t * nb + i].qs[c] + 32));
        p0[t] = _mm256_add_epi16(p0[t], _mm256_maddubs_epi16(_mm256_and_si256(v0, m4), vxl));
        p1[t] = _mm256_add_epi16(p1[t], _mm256_maddubs_epi16(_mm256_and_si256(v1, m4), vxl));
        p0[t] = _mm256_add_epi16(p0[t], _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v0, 4), m4), vxh));
        p1[t] = _mm256_add_epi16(p1[t], _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v1, 4), m4), vxh));
      }
    }
    const __m256 dx = _mm256_set1_ps(x.d[i]), sx8 = _mm256_set1_ps(8.0f * x.s[i]);
    for (int t = 0; t < T; ++t) {
      const __m256 f0 = _mm256_fmsub_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(p0[t], ones)), dx, sx8);
      const __m256 f1 = _mm256_fmsub_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(p1[t], ones)), dx, sx8);
      acc0[t] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[t * nb + i].d))), f0, acc0[t]);
      acc1[t] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[t * nb + i].d + 8))), f1, acc1[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    _mm256_storeu_ps(y + 16 * t, acc0[t]);
    _mm256_storeu_ps(y + 16 * t + 8, acc1[t]);
  }
}
static void x86_gemv_q4_0x16(const BlockQ4_0x16* w, Q8Act x, int64_t n, float* y) { q4_tiles<1>(w, x, n, y); }
static void x86_gemv_q4_0x16x2(const BlockQ4_0x16* w, Q8Act x, int64_t n, float* y) { q4_tiles<2>(w, x, n, y); }

// A q8_0x16 tile times one activation row, rows 0-7 and 8-15 in two registers; |w| times x with
// w's sign (so maddubs never saturates: |w| <= 128, |x| <= 127).
// T tiles share the broadcasts, as for q4_0.
template <int T>
static inline void q8_tiles(const BlockQ8_0x16* w, Q8Act x, int64_t n, float* y) {
  const int64_t nb = n / kQK;
  __m256 acc0[T], acc1[T];
  for (int t = 0; t < T; ++t) acc0[t] = acc1[t] = _mm256_setzero_ps();
#pragma GCC unroll 2
  for (int64_t i = 0; i < nb; ++i) {
    const int8_t* xb = x.qs + i * kQK;
    prefetch_tiles<T>(w, nb, i);
    __m256i s0[T], s1[T];
    for (int t = 0; t < T; ++t) s0[t] = s1[t] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      int32_t xv;
      memcpy(&xv, xb + 4 * c, 4);
      const __m256i xx = _mm256_set1_epi32(xv);
      for (int t = 0; t < T; ++t) {
        const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[t * nb + i].qs[c]));
        const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[t * nb + i].qs[c] + 32));
        s0[t] = _mm256_add_epi32(s0[t], dot_u8s8(_mm256_sign_epi8(v0, v0), _mm256_sign_epi8(xx, v0)));
        s1[t] = _mm256_add_epi32(s1[t], dot_u8s8(_mm256_sign_epi8(v1, v1), _mm256_sign_epi8(xx, v1)));
      }
    }
    const __m256 dx = _mm256_set1_ps(x.d[i]);
    for (int t = 0; t < T; ++t) {
      const __m256 d0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[t * nb + i].d)));
      const __m256 d1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[t * nb + i].d + 8)));
      acc0[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0[t]), _mm256_mul_ps(d0, dx), acc0[t]);
      acc1[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1[t]), _mm256_mul_ps(d1, dx), acc1[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    _mm256_storeu_ps(y + 16 * t, acc0[t]);
    _mm256_storeu_ps(y + 16 * t + 8, acc1[t]);
  }
}
static void x86_gemv_q8_0x16(const BlockQ8_0x16* w, Q8Act x, int64_t n, float* y) { q8_tiles<1>(w, x, n, y); }
static void x86_gemv_q8_0x16x2(const BlockQ8_0x16* w, Q8Act x, int64_t n, float* y) { q8_tiles<2>(w, x, n, y); }

// A q4_0x16 tile times R activation rows: each chunk's nibbles unpacked once, then every row's
// broadcasts; per row the one-row kernel's int16 sums (exact in any order) and float steps, so
// each row's values are bit-identical to q4_tiles<1>'s. At most four rows: eight int16 sums and
// eight accumulators already fill the sixteen registers.
template <int R>
static inline void q4_rows(const BlockQ4_0x16* w, const Q8Act* x, int64_t n, float* y, int64_t ldy) {
  const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  const int64_t nb = n / kQK;
  __m256 acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    prefetch_tiles<1>(w, nb, i);
    __m256i p0[R], p1[R];
    for (int r = 0; r < R; ++r) p0[r] = p1[r] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs[c]));
      const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs[c] + 32));
      const __m256i l0 = _mm256_and_si256(v0, m4), l1 = _mm256_and_si256(v1, m4);
      const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), m4), h1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4);
      for (int r = 0; r < R; ++r) {
        int32_t xl, xh;
        memcpy(&xl, x[r].qs + i * kQK + 4 * c, 4);
        memcpy(&xh, x[r].qs + i * kQK + 16 + 4 * c, 4);
        const __m256i vxl = _mm256_set1_epi32(xl), vxh = _mm256_set1_epi32(xh);
        p0[r] = _mm256_add_epi16(p0[r], _mm256_maddubs_epi16(l0, vxl));
        p1[r] = _mm256_add_epi16(p1[r], _mm256_maddubs_epi16(l1, vxl));
        p0[r] = _mm256_add_epi16(p0[r], _mm256_maddubs_epi16(h0, vxh));
        p1[r] = _mm256_add_epi16(p1[r], _mm256_maddubs_epi16(h1, vxh));
      }
    }
    const __m256 d0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i].d)));
    const __m256 d1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i].d + 8)));
    for (int r = 0; r < R; ++r) {
      const __m256 dx = _mm256_set1_ps(x[r].d[i]), sx8 = _mm256_set1_ps(8.0f * x[r].s[i]);
      const __m256 f0 = _mm256_fmsub_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(p0[r], ones)), dx, sx8);
      const __m256 f1 = _mm256_fmsub_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(p1[r], ones)), dx, sx8);
      acc0[r] = _mm256_fmadd_ps(d0, f0, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(d1, f1, acc1[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(y + r * ldy, acc0[r]);
    _mm256_storeu_ps(y + r * ldy + 8, acc1[r]);
  }
}

// A q8_0x16 tile times R activation rows: |w| once per chunk, each row's broadcast given w's
// sign. Bit-identical per row to q8_tiles<1>.
template <int R>
static inline void q8_rows(const BlockQ8_0x16* w, const Q8Act* x, int64_t n, float* y, int64_t ldy) {
  const int64_t nb = n / kQK;
  __m256 acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    prefetch_tiles<1>(w, nb, i);
    __m256i s0[R], s1[R];
    for (int r = 0; r < R; ++r) s0[r] = s1[r] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs[c]));
      const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs[c] + 32));
      const __m256i a0 = _mm256_sign_epi8(v0, v0), a1 = _mm256_sign_epi8(v1, v1);
      for (int r = 0; r < R; ++r) {
        int32_t xv;
        memcpy(&xv, x[r].qs + i * kQK + 4 * c, 4);
        const __m256i xx = _mm256_set1_epi32(xv);
        s0[r] = _mm256_add_epi32(s0[r], dot_u8s8(a0, _mm256_sign_epi8(xx, v0)));
        s1[r] = _mm256_add_epi32(s1[r], dot_u8s8(a1, _mm256_sign_epi8(xx, v1)));
      }
    }
    const __m256 d0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i].d)));
    const __m256 d1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i].d + 8)));
    for (int r = 0; r < R; ++r) {
      const __m256 dx = _mm256_set1_ps(x[r].d[i]);
      acc0[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0[r]), _mm256_mul_ps(d0, dx), acc0[r]);
      acc1[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1[r]), _mm256_mul_ps(d1, dx), acc1[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(y + r * ldy, acc0[r]);
    _mm256_storeu_ps(y + r * ldy + 8, acc1[r]);
  }
}

static void x86_gemm_q4_0x16(const BlockQ4_0x16* w, const Q8Act* x, int rows, int64_t n, float* y, int64_t ldy) {
  for_row_groups<4>(rows, [&](auto R, int r0) { q4_rows<R.value>(w, x + r0, n, y + r0 * ldy, ldy); });
}
static void x86_gemm_q8_0x16(const BlockQ8_0x16* w, const Q8Act* x, int rows, int64_t n, float* y, int64_t ldy) {
  for_row_groups<4>(rows, [&](auto R, int r0) { q8_rows<R.value>(w, x + r0, n, y + r0 * ldy, ldy); });
}

}  // namespace

const Table kAvx2 = {"avx2", f16_to_f32, f32_to_f16, bf16_to_f32, x86_dequant_q8_0,
                     x86_dequant_q4_0, x86_quantize_q8_act, dot_f32, dot_f32_ggml, dot_f16, dot_bf16,
                     x86_dot_q8_0, x86_dot_q4_0, x86_gemv_q4_0x16, x86_gemv_q8_0x16, x86_gemv_q4_0x16x2, x86_gemv_q8_0x16x2, x86_gemm_q4_0x16, x86_gemm_q8_0x16, x86_gemm_q2_K, x86_gemm_q3_K, x86_gemm_q4_K, x86_gemm_q5_K, x86_gemm_q6_K, x86_gemm_q4_Kx8, x86_gemm_q6_Kx8, x86_exp_affine, x86_sum_exp_affine, x86_adamw};

}  // namespace ocellus::kern
