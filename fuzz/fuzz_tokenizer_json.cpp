// libFuzzer target: a Hugging Face tokenizer.json (the bytes before the first NUL) with its
// tokenizer_config.json (the bytes after it, when there is a NUL) must load or throw
// ocellus::Error; a loaded tokenizer encodes and decodes text without crashing.
#include <cstdint>
#include <cstring>
#include <string>

#include "ocellus/core/error.h"
#include "ocellus/text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string all(reinterpret_cast<const char*>(data), size);
  const size_t nul = all.find('\0');
  const std::string json = all.substr(0, nul);
  const std::string config = nul == std::string::npos ? "" : all.substr(nul + 1);
  try {
    const ocellus::text::Tokenizer t = ocellus::text::Tokenizer::from_hf_json_text(
        json, "fuzz/tokenizer.json", nul == std::string::npos ? nullptr : &config, "fuzz/tokenizer_config.json");
    for (const char* text : {"Hello world, hello!", " 12345 \xd0\x9f\xd1\x80\xd0\xb8 \xe4\xb8\x96\n\t<|endoftext|><s>", ""}) {
      for (bool special : {false, true}) {
        const std::vector<int32_t> ids = t.encode(text, true, special);
        for (int32_t id : ids)
          if (id < 0 || id >= t.n_vocab()) __builtin_trap();
        (void)t.decode(ids, !special);
      }
    }
  } catch (const ocellus::Error&) {
  }
  return 0;
}
