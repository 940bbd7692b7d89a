// libFuzzer target: a Hugging Face config.json must parse or throw ocellus::Error.
#include <cstdint>
#include <string>

#include "ocellus/core/error.h"
#include "ocellus/io/hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const ocellus::io::HfConfig c =
        ocellus::io::parse_hf_config(std::string(reinterpret_cast<const char*>(data), size), "fuzz/config.json");
    if (c.text) (void)c.text->head_dim();
  } catch (const ocellus::Error&) {
  }
  return 0;
}
