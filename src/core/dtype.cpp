#include "ocellus/core/dtype.h"

#include <bit>

#include "ocellus/core/error.h"

namespace ocellus {

static const DTypeInfo kInfo[] = {
    {"f32", 1, 4, false},
    {"f16", 1, 2, false},
    {"bf16", 1, 2, false},
    {"q8_0", kQK, sizeof(BlockQ8_0), true},
    {"q4_0", kQK, sizeof(BlockQ4_0), true},
    {"q2_K", kQK_K, sizeof(BlockQ2K), true},
    {"q3_K", kQK_K, sizeof(BlockQ3K), true},
    {"q4_K", kQK_K, sizeof(BlockQ4K), true},
    {"q5_K", kQK_K, sizeof(BlockQ5K), true},
    {"q6_K", kQK_K, sizeof(BlockQ6K), true},
};

const DTypeInfo& dtype_info(DType t) {
  size_t i = size_t(t);
  OCELLUS_CHECK(i < sizeof(kInfo) / sizeof(kInfo[0]), "dtype: invalid dtype code ", i);
  return kInfo[i];
}

DType dtype_from_name(const std::string& name) {
  for (size_t i = 0; i < sizeof(kInfo) / sizeof(kInfo[0]); ++i)
    if (name == kInfo[i].name || (name.size() == 4 && name[3] == 'k' && name.substr(0, 3) + "K" == kInfo[i].name))
      return DType(i);
  fail("dtype: unknown dtype '", name, "' (expected f32, f16, bf16, q8_0, q4_0, q2_K, q3_K, q4_K, q5_K or q6_K)");
}

size_t row_bytes(DType t, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  OCELLUS_CHECK(n >= 0, "dtype: negative element count ", n);
  OCELLUS_CHECK(n % info.block_size == 0, "dtype: ", info.name, " row of ", n,
                " elements is not a multiple of the block size ", info.block_size);
  int64_t blocks = n / info.block_size;
  OCELLUS_CHECK(blocks <= INT64_MAX / info.block_bytes, "dtype: size of ", n, " ", info.name,
                " elements overflows");
  return size_t(blocks * info.block_bytes);
}

static inline uint32_t f32_bits(float f) { return std::bit_cast<uint32_t>(f); }
static inline float bits_f32(uint32_t u) { return std::bit_cast<float>(u); }

float fp16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0) {
    float v = float(mant) * 0x1p-24f;  // zero or subnormal, exact
    return sign ? -v : v;
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
  return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t f32_to_fp16(float f) {
  uint32_t x = f32_bits(f);
  uint16_t sign = uint16_t((x >> 16) & 0x8000);
  int32_t exp = int32_t((x >> 23) & 0xff);
  uint32_t mant = x & 0x7fffff;
  if (exp == 0xff) return uint16_t(sign | 0x7c00 | (mant ? 0x200 | (mant >> 13) : 0));
  int32_t e = exp - 127 + 15;
  if (e >= 31) return uint16_t(sign | 0x7c00);
  if (e <= 0) {  // half subnormal (or zero): units of 2^-24
    if (e < -10) return sign;
    uint32_t m = mant | 0x800000;
    int shift = 14 - e;
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) ++q;
    return uint16_t(sign | q);
  }
  uint32_t q = (uint32_t(e) << 10) | (mant >> 13), rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) ++q;  // a carry moves into the exponent
  return uint16_t(sign | q);
}

uint16_t f32_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffff) > 0x7f800000) return uint16_t((x >> 16) | 0x40);  // quiet NaN
  return uint16_t((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

}  // namespace ocellus

namespace ocellus {
float bf16_to_f32(uint16_t h) { return bits_f32(uint32_t(h) << 16); }
}  // namespace ocellus
