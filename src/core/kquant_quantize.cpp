// Writing K-quant super-blocks as llama.cpp's reference quantizers (quantize_row_q*_K_ref, what
// llama-quantize runs without an importance matrix) do, byte for byte: every block is searched
// for the sub-block scales (and mins) that fit it best, the scales are quantized, and the values
// are rounded again against the stored scales. Byte equality needs llama.cpp's float operations
// in its order, one rounding each (the library builds with -ffp-contract=off), its
// round-half-to-even, and its quirks (a sub-block whose stored scale is 0 keeps the levels of the
// first search). tests/core/test_kquant.cpp compares with llama.cpp's files.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ocellus/core/error.h"
#include "ocellus/core/kquant.h"

namespace ocellus {
namespace {

constexpr float kGroupMaxEps = 1e-15f;

inline int nearest_int(float v) { return int(std::lrintf(v)); }  // ties to even, as llama.cpp's
inline int clamp(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }

// The value of largest magnitude, its sign kept (the first of equals), into max; false for a
// group of zeros (below llama.cpp's epsilon), whose levels are all 0.
inline bool group_max(const float* x, int n, int8_t* L, float& max) {
  float amax = 0.0f;
  max = 0.0f;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), max = x[i];
  if (amax >= kGroupMaxEps) return true;
  std::fill(L, L + n, int8_t(0));
  return false;
}

// Symmetric levels in [-nmax, nmax) for a sub-block: the scale of least x²-weighted error among
// 19 candidates around -nmax / max (llama.cpp's make_qx_quants, rmse_type 1). L gets level + nmax.
float symmetric_scale(int n, int nmax, const float* x, int8_t* L) {
  float max;
  if (!group_max(x, n, L, max)) return 0.0f;
  // Σ w x l and Σ w l² for the levels `iscale` gives, w = x².
  auto sums = [&](float iscale, float& sumlx, float& suml2) {
    sumlx = suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float l = float(clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
  };
  auto levels = [&](float iscale) {
    for (int i = 0; i < n; ++i) L[i] = int8_t(nmax + clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
  };
  float sumlx, suml2;
  float iscale = float(-nmax) / max;
  sums(iscale, sumlx, suml2);
  levels(iscale);
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(float(nmax) + 0.1f * float(is)) / max;
    sums(iscale, sumlx, suml2);
    if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
      levels(iscale);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// q3_K's sub-block search (make_q3_quants with do_rmse): levels in [-nmax, nmax), then up to 5
// passes moving single levels while that lowers the x²-weighted error. L gets level + nmax.
float q3_scale(int n, int nmax, const float* x, int8_t* L) {
  float max;
  if (!group_max(x, n, L, max)) return 0.0f;
  const float iscale = float(-nmax) / max;
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = int8_t(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * float(l);
    suml2 += w * float(l) * float(l);
  }
  for (int pass = 0; pass < 5; ++pass) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * float(L[i]);
      if (slx <= 0.0f) continue;
      float sl2 = suml2 - w * float(L[i]) * float(L[i]);
      const int l = clamp(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
      if (l == L[i]) continue;
      slx += w * x[i] * float(l);
      sl2 += w * float(l) * float(l);
      if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
        L[i] = int8_t(l);
        sumlx = slx, suml2 = sl2;
        ++changed;
      }
    }
    if (!changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = int8_t(L[i] + nmax);
  return sumlx / suml2;
}

// Asymmetric levels in [0, nmax] with a min (make_qkx2_quants): x ≈ scale l - the_min. Starts
// from the sub-block's range, then tries nstep + 1 scales, each with its least-squares scale and
// min, keeping the one of least weighted error (|.| with use_mad, else squared).
float scale_and_min(int n, int nmax, const float* x, const float* weights, uint8_t* L, float& the_min, float rmin, float rdelta,
                    int nstep, bool use_mad) {
  float min = x[0], max = x[0], sum_w = weights[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += weights[i];
    sum_x += weights[i] * x[i];
  }
  if (min > 0.0f) min = 0.0f;
  if (max == min) {
    std::fill(L, L + n, uint8_t(0));
    the_min = -min;
    return 0.0f;
  }
  auto error = [&](float d) { return use_mad ? std::fabs(d) : d * d; };
  float iscale = float(nmax) / (max - min);
  float scale = 1.0f / iscale;
  float best_mad = 0.0f;
  for (int i = 0; i < n; ++i) {
    L[i] = uint8_t(clamp(nearest_int(iscale * (x[i] - min)), 0, nmax));
    best_mad += weights[i] * error(scale * float(L[i]) + min - x[i]);
  }
  uint8_t Laux[32];
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * float(is) + float(nmax)) / (max - min);
    float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
      Laux[i] = uint8_t(l);
      const float w = weights[i];
      sum_l += w * float(l);
      sum_l2 += w * float(l) * float(l);
      sum_xl += w * float(l) * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (!(D > 0.0f)) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    if (this_min > 0.0f) {
      this_min = 0.0f;
      this_scale = sum_xl / sum_l2;
    }
    float mad = 0.0f;
    for (int i = 0; i < n; ++i) mad += weights[i] * error(this_scale * float(Laux[i]) + this_min - x[i]);
    if (mad < best_mad) {
      std::memcpy(L, Laux, size_t(n));
      best_mad = mad;
      scale = this_scale;
      min = this_min;
    }
  }
  the_min = -min;
  return scale;
}

// q2_K / q3_K: 2 bits per value, each half of 128 values in 32 bytes (value 32 j + l of the half
// in bit pair j of byte l).
void pack_two_bits(const int8_t* L, uint8_t* qs) {
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const int8_t* v = L + 128 * h + l;
      qs[32 * h + l] = uint8_t(v[0] | (v[32] << 2) | (v[64] << 4) | (v[96] << 6));
    }
}

void quantize_q2_K(const float* x, BlockQ2K& y) {
  int8_t L[256];
  float scales[16], mins[16], weights[16];
  float max_scale = 0.0f, max_min = 0.0f;
  for (int j = 0; j < 16; ++j) {
    for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
    uint8_t Lj[16];
    scales[j] = scale_and_min(16, 3, x + 16 * j, weights, Lj, mins[j], -0.5f, 0.1f, 15, true);
    for (int l = 0; l < 16; ++l) L[16 * j + l] = int8_t(Lj[l]);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  if (max_scale > 0.0f) {
    const float iscale = 15.0f / max_scale;
    for (int j = 0; j < 16; ++j) y.scales[j] = uint8_t(nearest_int(iscale * scales[j]));
    y.d = f32_to_fp16(max_scale / 15.0f);
  } else {
    std::memset(y.scales, 0, sizeof(y.scales));
    y.d = f32_to_fp16(0.0f);
  }
  if (max_min > 0.0f) {
    const float iscale = 15.0f / max_min;
    for (int j = 0; j < 16; ++j) y.scales[j] = uint8_t(y.scales[j] | (nearest_int(iscale * mins[j]) << 4));
    y.dmin = f32_to_fp16(max_min / 15.0f);
  } else {
    y.dmin = f32_to_fp16(0.0f);
  }
  for (int j = 0; j < 16; ++j) {
    const float d = fp16_to_f32(y.d) * float(y.scales[j] & 0xF);
    if (d == 0.0f) continue;
    const float dm = fp16_to_f32(y.dmin) * float(y.scales[j] >> 4);
    for (int i = 0; i < 16; ++i) L[16 * j + i] = int8_t(clamp(nearest_int((x[16 * j + i] + dm) / d), 0, 3));
  }
  pack_two_bits(L, y.qs);
}

void quantize_q3_K(const float* x, BlockQ3K& y) {
  std::memset(&y, 0, sizeof(y));  // the stored scales are read back below with the rest unset
  int8_t L[256];
  float scales[16], amax = 0.0f, max_scale = 0.0f;
  for (int j = 0; j < 16; ++j) {
    scales[j] = q3_scale(16, 4, x + 16 * j, L + 16 * j);
    if (std::fabs(scales[j]) > amax) amax = std::fabs(scales[j]), max_scale = scales[j];
  }
  if (max_scale != 0.0f) {
    const float iscale = -32.0f / max_scale;
    for (int j = 0; j < 16; ++j) {
      const int l = clamp(nearest_int(iscale * scales[j]), -32, 31) + 32;  // 6 bits, offset 32
      if (j < 8)
        y.scales[j] = uint8_t(l & 0xF);
      else
        y.scales[j - 8] = uint8_t(y.scales[j - 8] | ((l & 0xF) << 4));
      y.scales[8 + j % 4] = uint8_t(y.scales[8 + j % 4] | ((l >> 4) << (2 * (j / 4))));
    }
    y.d = f32_to_fp16(1.0f / iscale);
  } else {
    y.d = f32_to_fp16(0.0f);
  }
  KUnpacked u;
  unpack_k_block(DType::Q3_K, &y, u);  // the stored scales (its levels are not read)
  for (int j = 0; j < 16; ++j) {
    const float d = fp16_to_f32(y.d) * float(u.sc[j]);
    if (d == 0.0f) continue;
    for (int i = 0; i < 16; ++i) L[16 * j + i] = int8_t(clamp(nearest_int(x[16 * j + i] / d), -4, 3) + 4);
  }
  // Levels 4..7 keep their high bit in hmask: value j at bit j / 32 of byte j % 32.
  for (int j = 0; j < 256; ++j)
    if (L[j] > 3) {
      y.hmask[j % 32] = uint8_t(y.hmask[j % 32] | (1 << (j / 32)));
      L[j] = int8_t(L[j] - 4);
    }
  pack_two_bits(L, y.qs);
}

// q4_K / q5_K: 8 sub-blocks of 32 with 6-bit scales and mins; `bits` 4 or 5.
template <typename Block>
void quantize_q45_K(const float* x, Block& y, int bits) {
  const int nmax = (1 << bits) - 1;
  const float rmin = bits == 4 ? -1.0f : -0.5f;
  const int nstep = bits == 4 ? 20 : 15;
  std::memset(&y, 0, sizeof(y));  // the stored scales are read back below with the rest unset
  uint8_t L[256];
  float scales[8], mins[8], weights[32];
  float max_scale = 0.0f, max_min = 0.0f;
  for (int j = 0; j < 8; ++j) {
    const float* xj = x + 32 * j;
    float sum_x2 = 0.0f;
    for (int l = 0; l < 32; ++l) sum_x2 += xj[l] * xj[l];
    const float av_x = std::sqrt(sum_x2 / 32.0f);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xj[l]);
    scales[j] = scale_and_min(32, nmax, xj, weights, L + 32 * j, mins[j], rmin, 0.1f, nstep, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
  for (int j = 0; j < 8; ++j) {
    // As bytes, as llama.cpp stores them before capping (a negative rounds to a byte above 63).
    const uint8_t ls = std::min<uint8_t>(63, uint8_t(nearest_int(inv_scale * scales[j])));
    const uint8_t lm = std::min<uint8_t>(63, uint8_t(nearest_int(inv_min * mins[j])));
    if (j < 4) {
      y.scales[j] = ls, y.scales[j + 4] = lm;
    } else {
      y.scales[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
      y.scales[j - 4] = uint8_t(y.scales[j - 4] | ((ls >> 4) << 6));
      y.scales[j] = uint8_t(y.scales[j] | ((lm >> 4) << 6));
    }
  }
  y.d = f32_to_fp16(max_scale / 63.0f);
  y.dmin = f32_to_fp16(max_min / 63.0f);
  KUnpacked u;
  unpack_k_block(bits == 4 ? DType::Q4_K : DType::Q5_K, &y, u);  // the stored scales and mins
  for (int j = 0; j < 8; ++j) {
    const float d = fp16_to_f32(y.d) * float(u.sc[j]);
    if (d == 0.0f) continue;
    const float dm = fp16_to_f32(y.dmin) * float(u.mn[j]);
    for (int i = 0; i < 32; ++i) L[32 * j + i] = uint8_t(clamp(nearest_int((x[32 * j + i] + dm) / d), 0, nmax));
  }
  // Value 64 c + l (l < 32) in the low nibble of qs[32 c + l], 64 c + 32 + l in its high nibble;
  // q5_K's fifth bits in qh[l], bit 2 c (low) and 2 c + 1 (high).
  uint8_t* qh = nullptr;
  if constexpr (requires { y.qh; }) {
    qh = y.qh;
  }
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
      if (qh) {
        if (lo > 15) lo -= 16, qh[l] = uint8_t(qh[l] | (1 << (2 * c)));
        if (hi > 15) hi -= 16, qh[l] = uint8_t(qh[l] | (2 << (2 * c)));
      }
      y.qs[32 * c + l] = uint8_t(lo | (hi << 4));
    }
}

void quantize_q6_K(const float* x, BlockQ6K& y) {
  int8_t L[256];
  float scales[16], max_abs = 0.0f, max_scale = 0.0f;
  for (int j = 0; j < 16; ++j) {
    scales[j] = symmetric_scale(16, 32, x + 16 * j, L + 16 * j);
    if (std::fabs(scales[j]) > max_abs) max_abs = std::fabs(scales[j]), max_scale = scales[j];
  }
  if (max_abs < kGroupMaxEps) {
    std::memset(&y, 0, sizeof(y));
    return;
  }
  const float iscale = -128.0f / max_scale;
  y.d = f32_to_fp16(1.0f / iscale);
  for (int j = 0; j < 16; ++j) y.scales[j] = int8_t(std::min(127, nearest_int(iscale * scales[j])));
  for (int j = 0; j < 16; ++j) {
    const float d = fp16_to_f32(y.d) * float(y.scales[j]);
    if (d == 0.0f) continue;
    for (int i = 0; i < 16; ++i) L[16 * j + i] = int8_t(clamp(nearest_int(x[16 * j + i] / d), -32, 31) + 32);
  }
  // Per half h of 128: low nibbles of values l and l + 64 in ql[64 h + l], of l + 32 and l + 96 in
  // ql[64 h + 32 + l]; the four high bit pairs in qh[32 h + l].
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const int8_t* v = L + 128 * h + l;
      y.ql[64 * h + l] = uint8_t((v[0] & 0xF) | ((v[64] & 0xF) << 4));
      y.ql[64 * h + 32 + l] = uint8_t((v[32] & 0xF) | ((v[96] & 0xF) << 4));
      y.qh[32 * h + l] = uint8_t((v[0] >> 4) | ((v[32] >> 4) << 2) | ((v[64] >> 4) << 4) | ((v[96] >> 4) << 6));
    }
}

}  // namespace

void quantize_row_k(DType t, const float* x, void* dst, int64_t n) {
  OCELLUS_CHECK(n % kQK_K == 0, "quantize ", dtype_name(t), ": row length ", n, " is not a multiple of ", kQK_K);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    switch (t) {
      case DType::Q2_K: quantize_q2_K(x, static_cast<BlockQ2K*>(dst)[i]); break;
      case DType::Q3_K: quantize_q3_K(x, static_cast<BlockQ3K*>(dst)[i]); break;
      case DType::Q4_K: quantize_q45_K(x, static_cast<BlockQ4K*>(dst)[i], 4); break;
      case DType::Q5_K: quantize_q45_K(x, static_cast<BlockQ5K*>(dst)[i], 5); break;
      case DType::Q6_K: quantize_q6_K(x, static_cast<BlockQ6K*>(dst)[i]); break;
      default: fail("kquant: ", dtype_name(t), " is not a K-quant type");
    }
  }
}

}  // namespace ocellus
