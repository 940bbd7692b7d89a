// libFuzzer target: an evaluation file (LLaVA-style questions) must parse or throw
// ocellus::Error; parsed questions score against answers without crashing.
#include <cstdint>
#include <string>
#include <vector>

#include "ocellus/core/error.h"
#include "ocellus/eval/eval.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ocellus::eval;
  try {
    const std::vector<Question> qs = parse_questions(std::string(reinterpret_cast<const char*>(data), size), "fuzz.json");
    // Each question answered with its own reference, then with its text (both go through the
    // normalization, yes/no and multiple-choice paths).
    std::vector<std::string> refs, texts;
    for (const Question& q : qs) refs.push_back(q.answer), texts.push_back(q.question);
    for (const auto* preds : {&refs, &texts}) {
      const Report r = score(qs, *preds);
      (void)format_table(r);
      (void)report_json(r, qs, *preds);
    }
  } catch (const ocellus::Error&) {
  }
  return 0;
}
