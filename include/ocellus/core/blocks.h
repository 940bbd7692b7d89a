#pragma once
// Block layouts of the quantized dtypes. Deliberately free of C++ library headers: the SIMD
// kernel files include it, and they are compiled with wide-ISA flags.
#include <stdint.h>

namespace ocellus {

constexpr int64_t kQK = 32;  // elements per q8_0 / q4_0 block

// q8_0 (llama.cpp): scale d (IEEE half), 32 signed bytes; x[i] = d * qs[i].
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
// q4_0 (llama.cpp): scale d (IEEE half), 16 bytes of nibbles; element i (i < 16) is the low
// nibble of qs[i], element i + 16 the high nibble; x = d * (nibble - 8).
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ8_0) == 34, "q8_0 block must be 34 bytes as in GGUF");
static_assert(sizeof(BlockQ4_0) == 18, "q4_0 block must be 18 bytes as in GGUF");

// K-quants (llama.cpp's "super-blocks" of 256 elements, exactly its GGUF layouts). Each holds
// 16 sub-blocks of 16 (q2_K, q3_K, q6_K) or 8 of 32 (q4_K, q5_K) with their own quantized
// scales (and mins), scaled again by the super-block's f16 d (dmin).
constexpr int64_t kQK_K = 256;
// x = d * sc * q - dmin * m; scales[s] = sc | m << 4 (4 bits each); q 2 bits.
struct BlockQ2K {
  uint8_t scales[16];
  uint8_t qs[64];
  uint16_t d, dmin;
};
// x = d * (sc - 32) * (q - 4 * !hbit); sc 6 bits packed in 12 bytes; q 2 low bits + hmask bit.
struct BlockQ3K {
  uint8_t hmask[32];
  uint8_t qs[64];
  uint8_t scales[12];
  uint16_t d;
};
// x = d * sc * q - dmin * m over 8 sub-blocks of 32; sc, m 6 bits packed in 12 bytes; q 4 bits.
struct BlockQ4K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
// As q4_K with a fifth bit per element in qh.
struct BlockQ5K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
// x = d * sc * (q - 32); sc int8 per sub-block of 16; q 4 low bits in ql, 2 high in qh.
struct BlockQ6K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
static_assert(sizeof(BlockQ2K) == 84 && sizeof(BlockQ3K) == 110 && sizeof(BlockQ4K) == 144 &&
                  sizeof(BlockQ5K) == 176 && sizeof(BlockQ6K) == 210,
              "K-quant blocks must be GGUF's sizes");
// Activations for K-quant products (llama.cpp's q8_K, never in a file): x = d * qs, d an f32,
// bsums the sums of each 16 values.
struct BlockQ8K {
  float d;
  int8_t qs[256];
  int16_t bsums[16];
};
static_assert(sizeof(BlockQ8K) == 292, "q8_K block is llama.cpp's");

// q4_0 repacked for matrix-vector products (an in-memory layout, never a file format): 16 rows
// form a tile; per 32-column block the tile holds the 16 rows' f16 scales, then four 64-byte
// chunks, chunk c holding qs bytes 4c..4c+3 of row 0, row 1, ..., row 15. A kernel then keeps one
// row per 32-bit lane: no horizontal sums, as llama.cpp's CPU "repack" layouts do.
constexpr int64_t kPackRows = 16;
struct BlockQ4_0x16 {
  uint16_t d[kPackRows];
  uint8_t qs[4][kPackRows * 4];
};
static_assert(sizeof(BlockQ4_0x16) == kPackRows * sizeof(BlockQ4_0), "packing keeps the size");

// q8_0 repacked the same way: per 32-column block the 16 rows' scales, then eight 64-byte chunks,
// chunk c holding values 4c..4c+3 of row 0, row 1, ..., row 15.
struct BlockQ8_0x16 {
  uint16_t d[kPackRows];
  int8_t qs[8][kPackRows * 4];
};
static_assert(sizeof(BlockQ8_0x16) == kPackRows * sizeof(BlockQ8_0), "packing keeps the size");

// q4_K repacked for matrix-vector products (an in-memory layout, never a file format): 8 rows
// form a tile; per super-block column the tile holds the rows' d and dmin, their scales and mins
// unpacked to bytes (sc[c][r]: sub-block c of row r), and qs[j][l] bytes 32 j + 4 l .. 32 j + 4 l
// + 3 of each row's qs (row r at 4 r): low nibbles elements 4 l .. 4 l + 3 of sub-block 2 j,
// high nibbles of sub-block 2 j + 1. A kernel keeps one row per 32-bit lane, and lane l of
// llama.cpp's eight float lanes in register l.
constexpr int64_t kKPackRows = 8;
struct BlockQ4Kx8 {
  uint16_t d[kKPackRows], dmin[kKPackRows];
  uint8_t sc[8][kKPackRows], mn[8][kKPackRows];
  uint8_t qs[4][8][4 * kKPackRows];
};
static_assert(sizeof(BlockQ4Kx8) == 1184, "8 rows' q4_K blocks with their scales as bytes");

// q6_K repacked the same way (the same size as 8 blocks): ql[h][kk][l] bytes 64 h + 32 kk + 4 l ..
// + 3 of each row's ql (low nibbles: elements 4 l .. of 32-group 4 h + kk, high nibbles: of group
// 4 h + kk + 2), qh[h][l] bytes 32 h + 4 l .. + 3 of each row's qh (bit pair k: group 4 h + k),
// sc[s][r] the rows' int8 scales, d their f16 scales.
struct BlockQ6Kx8 {
  uint8_t ql[2][2][8][4 * kKPackRows];
  uint8_t qh[2][8][4 * kKPackRows];
  int8_t sc[16][kKPackRows];
  uint16_t d[kKPackRows];
};
static_assert(sizeof(BlockQ6Kx8) == 8 * sizeof(BlockQ6K), "packing keeps the size");

// A row of activations quantized for integer dot products with q8_0 / q4_0 weights (not a file
// format): nb blocks of 32 as three arrays, so kernels load the scales of 8 blocks at once.
// qs[32 * nb] the values, d[nb] the block scales (at f16 precision, as llama.cpp's q8_0 blocks
// hold them), s[nb] = d * Σ qs (applies q4_0's "-8" offset).
struct Q8Act {
  int8_t* qs;
  float* d;
  float* s;
};

}  // namespace ocellus
