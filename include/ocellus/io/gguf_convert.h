#pragma once
// `ocellus quantize`: a GGUF file's weights at another type, as llama.cpp's llama-quantize writes
// them (without an importance matrix). Plain targets (F32, F16, BF16, Q8_0, Q4_0) put every
// weight matrix at one type; the K mixes (Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, Q6_K) choose a type per
// tensor by llama-quantize's rules (more bits for the output matrix, attn_v and some ffn_down).
// Text models only take the quantized targets' rules; a vision projector (mmproj) takes the
// plain types F32, F16, BF16 and Q8_0, every matrix at the type. Norms, biases and every key stay
// as they were; general.file_type is llama.cpp's value for the target.
#include <cstdint>
#include <string>

#include "ocellus/core/dtype.h"

namespace ocellus::io {

// A target as llama-quantize names it (llama_ftype).
struct QuantTarget {
  const char* name;    // "Q4_K_M"
  uint32_t file_type;  // general.file_type
  DType base;          // the type of most matrices (a K mix's other types follow llama-quantize's rules)
};

// The target a name gives, in any case ("q4_k_m", "F16"); an unknown name is an error listing
// the known ones.
const QuantTarget& quant_target_from_name(const std::string& name);

struct ConvertResult {
  int converted = 0, kept = 0;  // tensors written at a new type, tensors left as they were
  int fallback = 0;             // K matrices whose rows are not whole 256-blocks (q4_0 / q8_0 instead)
  uint64_t in_bytes = 0, out_bytes = 0;  // tensor data
};

// Refuses, before writing anything: an input holding block-quantized tensors (quantizing twice
// loses precision twice), an output that exists unless `force`, the input as its own output, a
// quantized target other than Q8_0 for a vision projector.
ConvertResult convert_gguf(const std::string& in, const std::string& out, const QuantTarget& target, bool force);

}  // namespace ocellus::io
