#include "ocellus/io/gguf_names.h"

#include <cstring>

#include "ocellus/core/error.h"

namespace ocellus::io::gguf {

std::string name(const char* pattern, int block) {
  const char* at = std::strstr(pattern, "%d");
  OCELLUS_CHECK(at, "gguf: tensor pattern '", pattern, "' takes no block index");
  return std::string(pattern, at) + std::to_string(block) + (at + 2);
}

}  // namespace ocellus::io::gguf
