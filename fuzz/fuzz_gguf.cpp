// libFuzzer target: GGUF parsing of arbitrary bytes must either succeed or throw ocellus::Error
// (never crash, hang, or allocate beyond what the input justifies). On success every accessor
// is exercised.
#include <cstdint>
#include <cstring>

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ocellus::io;
  try {
    GgufFile f = GgufFile::parse(data, size, "fuzz");
    for (const auto& [k, v] : f.metadata()) {
      (void)v.str_value();
      for (size_t i = 0; i < v.size() && i < 4; ++i) (void)v.at(i).str_value();
      if (v.is_integer()) (void)f.get_int(k);
    }
    uint64_t sum = 0;
    for (const GgufTensorInfo& t : f.tensors()) {
      const uint8_t* p = f.tensor_data(t);
      if (t.nbytes) sum += p[0] + p[t.nbytes - 1];  // first and last byte must be inside the input
    }
    (void)sum;
  } catch (const ocellus::Error&) {
  }
  return 0;
}
