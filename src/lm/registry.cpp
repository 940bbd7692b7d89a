// The text-model families, keyed by GGUF general.architecture.
#include <utility>

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/file.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/lm/lm.h"
#include "family_common.h"

namespace ocellus::lm {

namespace {
using Loader = std::unique_ptr<LanguageModel> (*)(const io::GgufFile&);
const std::pair<const char*, Loader> kFamilies[] = {
    {"llama", load_llama}, {"qwen2", load_qwen2}, {"phi2", load_phi2}, {"stablelm", load_stablelm}};
using HfPlanner = detail::HfPlan (*)(const io::HfTextConfig&);
const std::pair<const char*, HfPlanner> kHfFamilies[] = {{"llama", detail::llama_hf_plan},
                                                         {"qwen2", detail::qwen2_hf_plan},
                                                         {"phi", detail::phi2_hf_plan},
                                                         {"stablelm", detail::stablelm_hf_plan}};
}  // namespace

detail::HfPlan detail::hf_plan(const io::HfTextConfig& t, const std::string& path) {
  for (const auto& [name, plan] : kHfFamilies)
    if (t.model_type == name) return plan(t);
  fail("lm: ", path, ": model_type '", t.model_type, "' is not a text model ocellus runs (llama, qwen2, phi, stablelm)");
}

template <class F>
DecoderWeights<F> load_hf_weights(const io::HfTextConfig& t, const nn::Maker<F>& mk, LmConfig* c) {
  detail::HfPlan p = detail::hf_plan(t, "config.json");
  p.c.validate();
  DecoderWeights<F> w = detail::load_weights(mk, p.n, p.c, p.l);
  *c = std::move(p.c);
  return w;
}
template DecoderWeights<nn::Infer> load_hf_weights(const io::HfTextConfig&, const nn::Maker<nn::Infer>&, LmConfig*);
template DecoderWeights<nn::Train> load_hf_weights(const io::HfTextConfig&, const nn::Maker<nn::Train>&, LmConfig*);

io::TensorSource hf_text_source(const io::TensorSource& s) {
  if (s.has("language_model.model.embed_tokens.weight"))  // transformers < 4.52, TinyLLaVA
    return io::renamed_source(s, {{"", "language_model."}});
  if (s.has("model.language_model.embed_tokens.weight"))  // transformers >= 4.52
    return io::renamed_source(s, {{"model.", "model.language_model."}, {"lm_head.", "lm_head."}});
  return s;
}

std::unique_ptr<LanguageModel> load_hf(const io::HfTextConfig& t, const io::TensorSource& s) {
  // The family files read plain names; a LLaVA checkpoint keeps the text model under a prefix.
  const io::TensorSource src = hf_text_source(s);
  detail::HfPlan p = detail::hf_plan(t, s.path);
  return detail::make_model(std::move(p.c), src, p.n, p.l);
}

std::unique_ptr<LanguageModel> load_hf(const std::string& dir) {
  const io::HfConfig cfg = io::read_hf_config(dir);
  if (!cfg.text) fail("lm: ", dir, ": config.json describes no text model");
  const io::SafetensorsModel m = io::SafetensorsModel::open(dir);
  return load_hf(*cfg.text, io::safetensors_source(m, dir));
}

std::unique_ptr<LanguageModel> load_model(const std::string& path) {
  if (io::is_directory(path)) return load_hf(path);
  return load_gguf(io::GgufFile::open(path));
}

std::vector<std::string> known_architectures() {
  std::vector<std::string> r;
  for (const auto& f : kFamilies) r.push_back(f.first);
  return r;
}

std::vector<std::string> hf_model_types() {
  std::vector<std::string> r;
  for (const auto& f : kHfFamilies) r.push_back(f.first);
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
