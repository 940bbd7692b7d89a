// libFuzzer target: safetensors parsing of arbitrary bytes must either succeed or throw
// ocellus::Error; on success every tensor's byte range lies inside the input.
#include <cstdint>

#include "ocellus/core/error.h"
#include "ocellus/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ocellus::io;
  try {
    SafetensorsFile f = SafetensorsFile::parse(data, size, "fuzz");
    uint64_t sum = 0;
    for (const SafetensorsInfo& t : f.tensors()) {
      const uint8_t* p = f.tensor_data(t);
      if (t.end > t.begin) sum += p[0] + p[t.end - t.begin - 1];
    }
    (void)sum;
  } catch (const ocellus::Error&) {
  }
  return 0;
}
