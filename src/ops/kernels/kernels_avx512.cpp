// AVX-512 (F, BW, VL, DQ, VNNI) kernels: 512-bit float loops; the byte dot products use VNNI on
// 256-bit registers, one q8_0 / q4_0 block per instruction.
#include <immintrin.h>
#include <math.h>

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
float dot_f32_ggml(const float* w, const float* x, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), acc);
  // The tree spelled out (not _mm512_reduce_add_ps, whose order is the compiler's to choose).
  const __m256 h = _mm256_add_ps(_mm512_extractf32x8_ps(acc, 1), _mm512_castps512_ps256(acc));
  const __m128 q = _mm_add_ps(_mm256_extractf128_ps(h, 1), _mm256_castps256_ps128(h));
  const __m128 r = _mm_add_ps(q, _mm_movehl_ps(q, q));
  float s = _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)));
  for (; i < n; ++i) s = fmaf(w[i], x[i], s);  // the tail fused everywhere, so every table agrees
  return s;
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

// Quantized dots, two blocks per 512-bit register, eight blocks per step. Per-block integer
// sums are converted to float and multiplied by their block's scale product lane-wise (each
// 256-bit half holds one block), so no horizontal reduction happens inside the loop. The eight
// f16 weight scales are gathered with two-register word permutes (AVX512-BW) instead of eight
// scalar loads.

// Lanes 0-7 take scale 2j, lanes 8-15 scale 2j + 1.
static inline __m512 pair_scales(__m256 s8, int j) {
  const __m512i idx = _mm512_set_epi32(2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1,
                                       2 * j + 1, 2 * j + 1, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j,
                                       2 * j, 2 * j);
  return _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(s8));
}

// Eight f16 scales from a group of eight blocks starting at p.
template <int kBlockBytes>
static inline __m256 group_scales(const uint8_t* p) {
  if constexpr (kBlockBytes == int(sizeof(BlockQ4_0))) {
    constexpr short w = kBlockBytes / 2;
    const __m512i idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0, 0, 7 * w, 6 * w, 5 * w, 4 * w, 3 * w, 2 * w, w, 0);
    const __m512i a = _mm512_loadu_si512(p), b = _mm512_loadu_si512(p + 64);
    return _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutex2var_epi16(a, idx, b)));
  } else {
    // 34-byte blocks: blocks 0, 1 lie in the 64 bytes at block 0 (words 0, 17), blocks 2, 3 in
    // the 64 bytes at block 2; likewise 4-7. Two masked permutes fill words 0-3 and 4-7.
    constexpr short w = kBlockBytes / 2;
    const __m512i idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0, 0, w + 32, 32, w, 0, w + 32, 32, w, 0);
    const __m512i lo = _mm512_maskz_permutex2var_epi16(0x0f, _mm512_loadu_si512(p), idx,
                                                       _mm512_loadu_si512(p + 2 * kBlockBytes));
    const __m512i hi = _mm512_maskz_permutex2var_epi16(0xf0, _mm512_loadu_si512(p + 4 * kBlockBytes), idx,
                                                       _mm512_loadu_si512(p + 6 * kBlockBytes));
    return _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_or_si512(lo, hi)));
  }
}

// Products of blocks j and j+1 with their 64 activations as 16 int32 partial sums.
static inline __m512i q8_pair(const BlockQ8_0* w, const int8_t* x) {
  const __m512i wv = _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[0].qs))),
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[1].qs)), 1);
  const __m512i xv = _mm512_loadu_si512(x);
  // |w| (unsigned) times x with w's sign.
  const __mmask64 neg = _mm512_movepi8_mask(wv);
  const __m512i xs = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(wv), xs);
}

static inline __m512i q4_pair(const BlockQ4_0* w, const int8_t* x) {
  const __m512i v = _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[0].qs)))),
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[1].qs))), 1);
  const __m512i shift = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
  const __m512i q = _mm512_and_si512(_mm512_srlv_epi64(v, shift), _mm512_set1_epi8(0x0f));
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, _mm512_loadu_si512(x));
}

template <typename Block, typename Pair, typename Rest>
static inline float dot_groups(const Block* w, Q8Act x, int64_t nb, Pair pair, Rest rest, float* corr_out) {
  // One accumulator per pair: the FMA latency is not a chain through the loop.
  __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  __m256 corr = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= nb; i += 8) {
    const __m256 dw = group_scales<int(sizeof(Block))>(reinterpret_cast<const uint8_t*>(w + i));
    const __m256 s8 = _mm256_mul_ps(dw, _mm256_loadu_ps(x.d + i));
    corr = _mm256_fmadd_ps(dw, _mm256_loadu_ps(x.s + i), corr);
    const int8_t* xq = x.qs + i * kQK;
    acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair(w + i, xq)), pair_scales(s8, 0), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair(w + i + 2, xq + 2 * kQK)), pair_scales(s8, 1), acc1);
    acc2 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair(w + i + 4, xq + 4 * kQK)), pair_scales(s8, 2), acc2);
    acc3 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair(w + i + 6, xq + 6 * kQK)), pair_scales(s8, 3), acc3);
  }
  float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
  float c = hsum256(corr);
  if (i < nb) {
    float tail_corr;
    s += rest(w + i, Q8Act{x.qs + i * kQK, x.d + i, x.s + i}, nb - i, &tail_corr);
    c += tail_corr;
  }
  *corr_out = c;
  return s;
}

float dot_q8_0(const void* wv, Q8Act x, int64_t n) {
  float corr;
  return dot_groups(static_cast<const BlockQ8_0*>(wv), x, n / kQK, q8_pair,
                    [](const BlockQ8_0* w, Q8Act xr, int64_t nb, float* c) {
                      return dot_blocks(w, xr, nb, Q8Block{}, c);
                    }, &corr);
}

float dot_q4_0(const void* wv, Q8Act x, int64_t n) {
  float corr;
  const float s = dot_groups(static_cast<const BlockQ4_0*>(wv), x, n / kQK, q4_pair,
                             [](const BlockQ4_0* w, Q8Act xr, int64_t nb, float* c) {
                               return dot_blocks(w, xr, nb, Q4Block{}, c);
                             }, &corr);
  return s - 8.0f * corr;
}

// q4_0x16 tiles times one activation row: the 16 rows of a tile in the 16 lanes of one
// register; T tiles (1 or 2, T adjacent tiles of n/32 blocks each) share each activation
// broadcast. Low nibbles meet activations 4c..4c+3, high nibbles 16+4c..; four int32 chains
// per block and tile. The high nibbles stay in place (v & 0xf0 = 16 x nibble, one instruction
// where a shift and a mask took two) and their sums are divided by 16 at the block's end:
// exact, as every term is a multiple of 16. A tile's arithmetic is the same for T = 1 and 2.
//
// Two tiles at once (measured on Zen 5, 2 threads, out of cache): 36-41 -> 50-55 GB/s at
// k = 5632 and 8192, about even at k = 2048. Half the broadcasts per weight byte, and two
// memory streams per core instead of one.
template <int T>
static inline void q4_tiles(const BlockQ4_0x16* w, Q8Act x, int64_t n, float* y) {
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const int64_t nb = n / kQK;
  __m512 acc[T], corr[T];
  for (int t = 0; t < T; ++t) acc[t] = corr[t] = _mm512_setzero_ps();
#pragma GCC unroll 2  // two blocks in flight: measured 1.35x over none (one tile)
  for (int64_t i = 0; i < nb; ++i) {
    const int8_t* xb = x.qs + i * kQK;
    prefetch_tiles<T>(w, nb, i);
    __m512i s[T][4];
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < 4; ++c) s[t][c] = _mm512_setzero_si512();
    for (int c = 0; c < 4; ++c) {
      int32_t xl, xh;
      memcpy(&xl, xb + 4 * c, 4);
      memcpy(&xh, xb + 16 + 4 * c, 4);
      const __m512i bl = _mm512_set1_epi32(xl), bh = _mm512_set1_epi32(xh);
      for (int t = 0; t < T; ++t) {
        const __m512i v = _mm512_loadu_si512(w[t * nb + i].qs[c]);
        s[t][c & 1] = _mm512_dpbusd_epi32(s[t][c & 1], _mm512_and_si512(v, m4), bl);
        s[t][2 + (c & 1)] = _mm512_dpbusd_epi32(s[t][2 + (c & 1)], _mm512_andnot_si512(m4, v), bh);
      }
    }
    const __m512 xd = _mm512_set1_ps(x.d[i]), xs = _mm512_set1_ps(x.s[i]);
    for (int t = 0; t < T; ++t) {
      const __m512i lo = _mm512_add_epi32(s[t][0], s[t][1]), hi = _mm512_srai_epi32(_mm512_add_epi32(s[t][2], s[t][3]), 4);
      const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[t * nb + i].d)));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(lo, hi)), _mm512_mul_ps(dw, xd), acc[t]);
      corr[t] = _mm512_fmadd_ps(dw, xs, corr[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + 16 * t, _mm512_fnmadd_ps(_mm512_set1_ps(8.0f), corr[t], acc[t]));
}

void gemv_q4_0x16(const BlockQ4_0x16* w, Q8Act x, int64_t n, float* y) { q4_tiles<1>(w, x, n, y); }
void gemv_q4_0x16x2(const BlockQ4_0x16* w, Q8Act x, int64_t n, float* y) { q4_tiles<2>(w, x, n, y); }

// q8_0x16 tiles times one activation row: |w| (unsigned) times x with w's sign, 16 rows per
// register; four short dpbusd chains per tile; T tiles share the broadcasts, as for q4_0.
template <int T>
static inline void q8_tiles(const BlockQ8_0x16* w, Q8Act x, int64_t n, float* y) {
  const __m512i zero = _mm512_setzero_si512();
  const int64_t nb = n / kQK;
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int64_t i = 0; i < nb; ++i) {
    const int8_t* xb = x.qs + i * kQK;
    prefetch_tiles<T>(w, nb, i);
    __m512i s[T][4];
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < 4; ++c) s[t][c] = zero;
    for (int c = 0; c < 8; ++c) {
      int32_t xv;
      memcpy(&xv, xb + 4 * c, 4);
      const __m512i xx = _mm512_set1_epi32(xv);
      for (int t = 0; t < T; ++t) {
        const __m512i v = _mm512_loadu_si512(w[t * nb + i].qs[c]);
        const __m512i xsg = _mm512_mask_sub_epi8(xx, _mm512_movepi8_mask(v), zero, xx);
        s[t][c & 3] = _mm512_dpbusd_epi32(s[t][c & 3], _mm512_abs_epi8(v), xsg);
      }
    }
    const __m512 xd = _mm512_set1_ps(x.d[i]);
    for (int t = 0; t < T; ++t) {
      const __m512i sum = _mm512_add_epi32(_mm512_add_epi32(s[t][0], s[t][1]), _mm512_add_epi32(s[t][2], s[t][3]));
      const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[t * nb + i].d)));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dw, xd), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + 16 * t, acc[t]);
}

void gemv_q8_0x16(const BlockQ8_0x16* w, Q8Act x, int64_t n, float* y) { q8_tiles<1>(w, x, n, y); }
void gemv_q8_0x16x2(const BlockQ8_0x16* w, Q8Act x, int64_t n, float* y) { q8_tiles<2>(w, x, n, y); }

// A q4_0x16 tile times R activation rows: each chunk's nibbles are unpacked once (low v & 0xf,
// high (v >> 4) & 0xf) and meet every row's broadcasts. The integer sums are the one-row
// kernel's (exact in any order) and the float steps are its steps, so each row's values are
// bit-identical to q4_tiles<1>'s. Up to four rows keep two int32 chains each (low, high); eight
// rows one each, which the rows themselves interleave (30 of the 32 registers live). The
// prefetch measured +25% for 4 and 8 rows (BM_DecodeBatch, Xeon), even for prefill.
template <int R>
static inline void q4_rows(const BlockQ4_0x16* w, const Q8Act* x, int64_t n, float* y, int64_t ldy) {
  constexpr int C = R <= 4 ? 2 : 1;
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const int64_t nb = n / kQK;
  __m512 acc[R], corr[R];
  for (int r = 0; r < R; ++r) acc[r] = corr[r] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    prefetch_tiles<1>(w, nb, i);
    __m512i s[R][C];
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < C; ++c) s[r][c] = _mm512_setzero_si512();
    for (int c = 0; c < 4; ++c) {
      const __m512i v = _mm512_loadu_si512(w[i].qs[c]);
      const __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
      for (int r = 0; r < R; ++r) {
        int32_t xl, xh;
        memcpy(&xl, x[r].qs + i * kQK + 4 * c, 4);
        memcpy(&xh, x[r].qs + i * kQK + 16 + 4 * c, 4);
        s[r][0] = _mm512_dpbusd_epi32(s[r][0], lo, _mm512_set1_epi32(xl));
        s[r][C - 1] = _mm512_dpbusd_epi32(s[r][C - 1], hi, _mm512_set1_epi32(xh));
      }
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].d)));
    for (int r = 0; r < R; ++r) {
      const __m512i sum = C == 2 ? _mm512_add_epi32(s[r][0], s[r][C - 1]) : s[r][0];
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dw, _mm512_set1_ps(x[r].d[i])), acc[r]);
      corr[r] = _mm512_fmadd_ps(dw, _mm512_set1_ps(x[r].s[i]), corr[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(y + r * ldy, _mm512_fnmadd_ps(_mm512_set1_ps(8.0f), corr[r], acc[r]));
}

// A q8_0x16 tile times R activation rows: |w| and w's sign taken once per chunk, each row's
// broadcast given that sign; one int32 chain per row. Bit-identical per row to q8_tiles<1>.
template <int R>
static inline void q8_rows(const BlockQ8_0x16* w, const Q8Act* x, int64_t n, float* y, int64_t ldy) {
  const __m512i zero = _mm512_setzero_si512();
  const int64_t nb = n / kQK;
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    prefetch_tiles<1>(w, nb, i);
    __m512i s[R];
    for (int r = 0; r < R; ++r) s[r] = zero;
    for (int c = 0; c < 8; ++c) {
      const __m512i v = _mm512_loadu_si512(w[i].qs[c]);
      const __m512i a = _mm512_abs_epi8(v);
      const __mmask64 neg = _mm512_movepi8_mask(v);
      for (int r = 0; r < R; ++r) {
        int32_t xv;
        memcpy(&xv, x[r].qs + i * kQK + 4 * c, 4);
        const __m512i xx = _mm512_set1_epi32(xv);
        s[r] = _mm512_dpbusd_epi32(s[r], a, _mm512_mask_sub_epi8(xx, neg, zero, xx));
      }
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].d)));
    for (int r = 0; r < R; ++r)
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r]), _mm512_mul_ps(dw, _mm512_set1_ps(x[r].d[i])), acc[r]);
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(y + r * ldy, acc[r]);
}

void gemm_q4_0x16(const BlockQ4_0x16* w, const Q8Act* x, int rows, int64_t n, float* y, int64_t ldy) {
  for_row_groups<kGemmRows>(rows, [&](auto R, int r0) { q4_rows<R.value>(w, x + r0, n, y + r0 * ldy, ldy); });
}
void gemm_q8_0x16(const BlockQ8_0x16* w, const Q8Act* x, int rows, int64_t n, float* y, int64_t ldy) {
  for_row_groups<kGemmRows>(rows, [&](auto R, int r0) { q8_rows<R.value>(w, x + r0, n, y + r0 * ldy, ldy); });
}

}  // namespace

const Table kAvx512 = {"avx512", f16_to_f32, f32_to_f16, bf16_to_f32, x86_dequant_q8_0,
                       x86_dequant_q4_0, x86_quantize_q8_act, dot_f32, dot_f32_ggml, dot_f16, dot_bf16,
                       dot_q8_0, dot_q4_0, gemv_q4_0x16, gemv_q8_0x16, gemv_q4_0x16x2, gemv_q8_0x16x2, gemm_q4_0x16, gemm_q8_0x16, x86_gemm_q2_K, x86_gemm_q3_K, x86_gemm_q4_K, x86_gemm_q5_K, x86_gemm_q6_K, x86_gemm_q4_Kx8, x86_gemm_q6_Kx8, x86_exp_affine, x86_sum_exp_affine, x86_adamw};

}  // namespace ocellus::kern
