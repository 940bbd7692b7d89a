#pragma once
// Element types. Quantized types use exactly llama.cpp's GGUF block layouts, so tensors from a
// GGUF file are used in place, without conversion.
#include <cstddef>
#include <cstdint>
#include <string>

#include "ocellus/core/blocks.h"

namespace ocellus {

enum class DType : uint8_t { F32, F16, BF16, Q8_0, Q4_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K };

// q2_K ... q6_K: llama.cpp's K-quant super-blocks of 256.
inline bool is_k_quant(DType t) { return t >= DType::Q2_K && t <= DType::Q6_K; }

struct DTypeInfo {
  const char* name;
  int64_t block_size;   // elements per block (1 for plain types)
  int64_t block_bytes;  // bytes per block
  bool quantized;
};

const DTypeInfo& dtype_info(DType t);
inline const char* dtype_name(DType t) { return dtype_info(t).name; }
// Parses "f32", "f16", "bf16", "q8_0", "q4_0", "q2_K" ... "q6_K" (K case-insensitive); throws on
// anything else.
DType dtype_from_name(const std::string& name);

// Bytes of a row of n elements; throws if n is not a whole number of blocks or overflows.
size_t row_bytes(DType t, int64_t n);

// ---- scalar conversions (round to nearest even, NaN and Inf kept) --------------------------
float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

}  // namespace ocellus
