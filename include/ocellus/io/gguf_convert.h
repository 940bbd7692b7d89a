#pragma once
// A GGUF file's weights converted to one plain type (`ocellus quantize`), as llama.cpp's
// llama-quantize does for F32 / F16 / BF16 / Q8_0: every tensor of two or more dimensions whose
// name ends in ".weight" and whose rows are whole blocks of the type; norms, biases and every
// key as they are; general.file_type set to llama.cpp's value for the type.
#include <cstdint>
#include <string>

#include "ocellus/core/dtype.h"

namespace ocellus::io {

struct ConvertResult {
  int converted = 0, kept = 0;  // tensors written at the new type, tensors left as they were
  uint64_t in_bytes = 0, out_bytes = 0;  // tensor data
};

// The type a name gives, spelled as llama-quantize spells it or in lower case ("F16", "q8_0");
// an unknown or not yet supported name is an error listing the supported ones.
DType convert_type_from_name(const std::string& name);

// Refuses, before writing anything: an input holding block-quantized tensors (quantizing twice
// loses precision twice), an output that exists unless `force`, the input as its own output.
ConvertResult convert_gguf(const std::string& in, const std::string& out, DType type, bool force);

}  // namespace ocellus::io
