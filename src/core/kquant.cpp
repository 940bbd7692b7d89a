#include "ocellus/core/kquant.h"

#include <cmath>
#include <cstring>

#include "ocellus/core/error.h"

namespace ocellus {
namespace {

// q2_K / q3_K: the 64 bytes of 2-bit values hold two halves of 128 elements; within half h,
// the bit pair 2j of byte l (l < 32) is element 128 h + 32 j + l.
inline int two_bits(const uint8_t* qs, int e) {
  const int h = e / 128, j = (e % 128) / 32, l = e % 32;
  return (qs[32 * h + l] >> (2 * j)) & 3;
}

// q4_K / q5_K: the 6-bit scale and min of sub-block s (of 8) from the 12 packed bytes.
inline void scale_min_k4(int s, const uint8_t* q, int32_t& sc, int32_t& mn) {
  if (s < 4) {
    sc = q[s] & 63, mn = q[s + 4] & 63;
  } else {
    sc = (q[s + 4] & 0xF) | ((q[s - 4] >> 6) << 4);
    mn = (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
  }
}

void unpack_q2_K(const BlockQ2K& b, KUnpacked& u) {
  u.d = fp16_to_f32(b.d), u.dmin = fp16_to_f32(b.dmin), u.sub = 16;
  for (int s = 0; s < 16; ++s) u.sc[s] = b.scales[s] & 0xF, u.mn[s] = b.scales[s] >> 4;
  for (int e = 0; e < 256; ++e) u.q[e] = int8_t(two_bits(b.qs, e));
}

void unpack_q3_K(const BlockQ3K& b, KUnpacked& u) {
  u.d = fp16_to_f32(b.d), u.dmin = 0.0f, u.sub = 16;
  // Scale s: low 4 bits from byte s (s < 8) or the high nibble of byte s - 8; its high 2 bits
  // from byte 8 + s % 4, bit pair s / 4. Stored with an offset of 32.
  for (int s = 0; s < 16; ++s) {
    const int low = s < 8 ? b.scales[s] & 0xF : b.scales[s - 8] >> 4;
    const int high = (b.scales[8 + s % 4] >> (2 * (s / 4))) & 3;
    u.sc[s] = (low | (high << 4)) - 32, u.mn[s] = 0;
  }
  // The high bit of element 128 h + 32 j + l is bit 4 h + j of hmask[l]; clear means -4.
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, j = (e % 128) / 32, l = e % 32;
    u.q[e] = int8_t(two_bits(b.qs, e) - ((b.hmask[l] >> (4 * h + j)) & 1 ? 0 : 4));
  }
}

// q4_K / q5_K: element 64 j + l (l < 32) is the low nibble of qs[32 j + l], 64 j + 32 + l its
// high nibble; q5_K's fifth bit is bit 2 j (low) or 2 j + 1 (high) of qh[l].
template <typename Block>
void unpack_q45_K(const Block& b, const uint8_t* qh, KUnpacked& u) {
  u.d = fp16_to_f32(b.d), u.dmin = fp16_to_f32(b.dmin), u.sub = 32;
  for (int s = 0; s < 8; ++s) scale_min_k4(s, b.scales, u.sc[s], u.mn[s]);
  for (int j = 0; j < 4; ++j)
    for (int l = 0; l < 32; ++l) {
      const uint8_t v = b.qs[32 * j + l];
      const int hi_lo = qh ? ((qh[l] >> (2 * j)) & 1) << 4 : 0, hi_hi = qh ? ((qh[l] >> (2 * j + 1)) & 1) << 4 : 0;
      u.q[64 * j + l] = int8_t((v & 0xF) | hi_lo);
      u.q[64 * j + 32 + l] = int8_t((v >> 4) | hi_hi);
    }
}

// q6_K: in half h, element 128 h + 32 k + l (k < 4, l < 32) takes 4 bits of ql[64 h + l] (k even:
// +0, odd: +32; low nibble for k < 2, high for k >= 2) and bit pair k of qh[32 h + l]; minus 32.
void unpack_q6_K(const BlockQ6K& b, KUnpacked& u) {
  u.d = fp16_to_f32(b.d), u.dmin = 0.0f, u.sub = 16;
  for (int s = 0; s < 16; ++s) u.sc[s] = b.scales[s], u.mn[s] = 0;
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < 4; ++k)
      for (int l = 0; l < 32; ++l) {
        const uint8_t lo = b.ql[64 * h + l + 32 * (k & 1)];
        const int nib = k < 2 ? lo & 0xF : lo >> 4;
        const int high = (b.qh[32 * h + l] >> (2 * k)) & 3;
        u.q[128 * h + 32 * k + l] = int8_t((nib | (high << 4)) - 32);
      }
}

}  // namespace

void unpack_k_block(DType t, const void* block, KUnpacked& u) {
  switch (t) {
    case DType::Q2_K: return unpack_q2_K(*static_cast<const BlockQ2K*>(block), u);
    case DType::Q3_K: return unpack_q3_K(*static_cast<const BlockQ3K*>(block), u);
    case DType::Q4_K: return unpack_q45_K(*static_cast<const BlockQ4K*>(block), nullptr, u);
    case DType::Q5_K: {
      const BlockQ5K& b = *static_cast<const BlockQ5K*>(block);
      return unpack_q45_K(b, b.qh, u);
    }
    case DType::Q6_K: return unpack_q6_K(*static_cast<const BlockQ6K*>(block), u);
    default: fail("kquant: ", dtype_name(t), " is not a K-quant type");
  }
}

void dequantize_row_k(DType t, const void* src, float* y, int64_t n) {
  const size_t bb = size_t(dtype_info(t).block_bytes);
  KUnpacked u;
  for (int64_t i = 0; i < n / kQK_K; ++i, y += kQK_K) {
    unpack_k_block(t, static_cast<const uint8_t*>(src) + size_t(i) * bb, u);
    // llama.cpp's order: (d sc) q - (dmin mn), each product rounded to float.
    for (int e = 0; e < kQK_K; ++e) {
      const int s = e / u.sub;
      y[e] = u.d * float(u.sc[s]) * float(u.q[e]) - u.dmin * float(u.mn[s]);
    }
  }
}

void quantize_row_q8_K(const float* x, BlockQ8K* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    float amax = 0, max = 0;
    for (int j = 0; j < kQK_K; ++j)
      if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), max = x[j];
    BlockQ8K& b = y[i];
    if (amax == 0.0f) {
      std::memset(&b, 0, sizeof(b));
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQK_K; ++j) b.qs[j] = int8_t(std::min(127, int(std::nearbyint(iscale * x[j]))));
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += b.qs[16 * g + j];
      b.bsums[g] = int16_t(sum);
    }
    b.d = 1.0f / iscale;
  }
}

void pack_tile_row(const BlockQ4K& b, int r, BlockQ4Kx8& o) {
  o.d[r] = b.d, o.dmin[r] = b.dmin;
  for (int c = 0; c < 8; ++c) {
    int32_t sc, mn;
    scale_min_k4(c, b.scales, sc, mn);
    o.sc[c][r] = uint8_t(sc), o.mn[c][r] = uint8_t(mn);
  }
  for (int j = 0; j < 4; ++j)
    for (int l = 0; l < 8; ++l) std::memcpy(o.qs[j][l] + 4 * r, b.qs + 32 * j + 4 * l, 4);
}
void pack_tile_row(const BlockQ6K& b, int r, BlockQ6Kx8& o) {
  o.d[r] = b.d;
  for (int s = 0; s < 16; ++s) o.sc[s][r] = b.scales[s];
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 8; ++l) {
      for (int kk = 0; kk < 2; ++kk) std::memcpy(o.ql[h][kk][l] + 4 * r, b.ql + 64 * h + 32 * kk + 4 * l, 4);
      std::memcpy(o.qh[h][l] + 4 * r, b.qh + 32 * h + 4 * l, 4);
    }
}

void unpack_q4_Kx8_row(const BlockQ4Kx8& t, int r, KUnpacked& u) {
  u.d = fp16_to_f32(t.d[r]), u.dmin = fp16_to_f32(t.dmin[r]), u.sub = 32;
  for (int c = 0; c < 8; ++c) u.sc[c] = t.sc[c][r], u.mn[c] = t.mn[c][r];
  for (int j = 0; j < 4; ++j)
    for (int l = 0; l < 8; ++l)
      for (int b = 0; b < 4; ++b) {
        const uint8_t v = t.qs[j][l][4 * r + b];
        u.q[64 * j + 4 * l + b] = int8_t(v & 0xF), u.q[64 * j + 32 + 4 * l + b] = int8_t(v >> 4);
      }
}

void unpack_q6_Kx8_row(const BlockQ6Kx8& t, int r, KUnpacked& u) {
  u.d = fp16_to_f32(t.d[r]), u.dmin = 0.0f, u.sub = 16;
  for (int s = 0; s < 16; ++s) u.sc[s] = t.sc[s][r], u.mn[s] = 0;
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < 4; ++k)
      for (int l = 0; l < 8; ++l)
        for (int b = 0; b < 4; ++b) {
          const uint8_t lo = t.ql[h][k & 1][l][4 * r + b], hi = t.qh[h][l][4 * r + b];
          const int nib = k < 2 ? lo & 0xF : lo >> 4;
          u.q[128 * h + 32 * k + 4 * l + b] = int8_t((nib | (((hi >> (2 * k)) & 3) << 4)) - 32);
        }
}

// llama.cpp's x86 (AVX2) float steps, which its logits carry: eight lanes, lane l holding
// elements 4l .. 4l + 3 of every 32, each block's lane sums added by one fused multiply-add.
void KDot::add(DType t, const KUnpacked& u, const BlockQ8K& xb) {
  int32_t lane[8] = {0};
  for (int e = 0; e < kQK_K; ++e) lane[(e % 32) / 4] += u.sc[e / u.sub] * int32_t(u.q[e]) * xb.qs[e];
  const float d = xb.d * u.d, m = -xb.d * u.dmin;
  if (t == DType::Q2_K)  // mins per 16, into the same lanes first: lane l has sub-blocks 2l, 2l + 1
    for (int l = 0; l < 8; ++l) acc[l] = std::fma(m, float(u.mn[2 * l] * xb.bsums[2 * l] + u.mn[2 * l + 1] * xb.bsums[2 * l + 1]), acc[l]);
  for (int l = 0; l < 8; ++l) acc[l] = std::fma(d, float(lane[l]), acc[l]);
  if (t == DType::Q4_K || t == DType::Q5_K) {  // mins per 32, paired: P_k for sub-blocks 2k, 2k + 1
    int32_t P[4];
    for (int k = 0; k < 4; ++k)
      P[k] = u.mn[2 * k] * (xb.bsums[4 * k] + xb.bsums[4 * k + 1]) + u.mn[2 * k + 1] * (xb.bsums[4 * k + 2] + xb.bsums[4 * k + 3]);
    if (t == DType::Q4_K)
      for (int k = 0; k < 4; ++k) acc_m[k] = std::fma(m, float(P[k]), acc_m[k]);
    else
      summs = std::fma(m, float(P[0] + P[1] + P[2] + P[3]), summs);
  }
}

float KDot::result(DType t) const {
  const float h = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
  if (t == DType::Q4_K) return h + ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]));
  if (t == DType::Q5_K) return h + summs;
  return h;
}

float dot_k_q8_K(DType t, const void* w, const BlockQ8K* x, int64_t n) {
  const size_t bb = size_t(dtype_info(t).block_bytes);
  KUnpacked u;
  KDot dot;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    unpack_k_block(t, static_cast<const uint8_t*>(w) + size_t(i) * bb, u);
    dot.add(t, u, x[i]);
  }
  return dot.result(t);
}

}  // namespace ocellus
