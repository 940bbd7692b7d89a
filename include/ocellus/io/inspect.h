#pragma once
// Readable summaries of model files: GGUF (text model or mmproj), a .safetensors file, or a
// Hugging Face folder (config.json + safetensors, sharded or not). `ocellus inspect` prints them.
#include <string>

namespace ocellus::io {

struct InspectOptions {
  bool tensors = false;   // list every tensor: name, dtype, shape, bytes, offset
  bool metadata = false;  // list every metadata key with its value (long arrays summarized)
};

std::string inspect_model_file(const std::string& path, const InspectOptions& opt = {});

// "1.5 KiB", "3.2 MiB", ...
std::string human_bytes(uint64_t n);

}  // namespace ocellus::io
