// The text-model families, keyed by GGUF general.architecture.
#include <utility>

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/lm/lm.h"

namespace ocellus::lm {

namespace {
using Loader = std::unique_ptr<LanguageModel> (*)(const io::GgufFile&);
const std::pair<const char*, Loader> kFamilies[] = {
    {"llama", load_llama}, {"qwen2", load_qwen2}, {"phi2", load_phi2}, {"stablelm", load_stablelm}};
}  // namespace

std::vector<std::string> known_architectures() {
  std::vector<std::string> r;
  for (const auto& f : kFamilies) r.push_back(f.first);
  return r;
}

std::unique_ptr<LanguageModel> load_gguf(const io::GgufFile& f) {
  const std::string arch = f.get_string(io::gguf::key::kArchitecture);
  for (const auto& [name, loader] : kFamilies)
    if (arch == name) return loader(f);
  std::string known;
  for (const auto& k : known_architectures()) known += (known.empty() ? "" : ", ") + k;
  fail("lm: ", f.path(), ": architecture '", arch, "' is not a text model ocellus runs (", known, ")");
}

}  // namespace ocellus::lm
