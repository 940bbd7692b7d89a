// libFuzzer target: LLaVA conversation JSON (training data) must parse or throw ocellus::Error,
// both failing on and skipping malformed records; parsed records encode as training sequences
// (every chat template, a short length so truncation is exercised) without crashing.
#include <cstdint>
#include <string>
#include <vector>

#include "byte_tokenizer.h"
#include "ocellus/core/error.h"
#include "ocellus/data/llava_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ocellus;
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    (void)data::parse_llava_json(text, "fuzz.json", data::OnBad::Fail);
  } catch (const Error&) {
  }
  try {
    std::vector<std::string> skipped;
    const std::vector<data::Record> recs = data::parse_llava_json(text, "fuzz.json", data::OnBad::Skip, &skipped);
    for (const data::Record& r : recs)
      for (text::ChatTemplate t : {text::ChatTemplate::Llama2, text::ChatTemplate::Llama3, text::ChatTemplate::Vicuna,
                                   text::ChatTemplate::ChatML, text::ChatTemplate::Phi2}) {
        try {
          const data::Encoded e = data::encode_record(r, fuzz::byte_tokenizer(), t, 4, 48);
          if (e.ids.size() != e.mask.size() || e.ids.size() > 48) __builtin_trap();
        } catch (const Error&) {  // a record the template cannot render (e.g. roles out of order)
        }
      }
  } catch (const Error&) {
  }
  return 0;
}
