// The chat template a model gets: its own (Jinja in its files) when ocellus knows it, else its
// family's default (lm/family.h).
#include "ocellus/core/error.h"
#include "ocellus/io/file.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/lm/family.h"

namespace ocellus::lm {

namespace {

text::ChatTemplate detect(const std::string& jinja, const Family* f, bool has_eot_id, const std::string& what,
                          const std::string& arch) {
  if (const auto t = text::chat_template_from_jinja(jinja)) return *t;
  if (!f) fail("chat: ", what, ": no chat template identifies this model (architecture '", arch, "'); choose one by name");
  return text::chat_template_from_name(has_eot_id && !f->chat_template_with_eot_id.empty() ? f->chat_template_with_eot_id
                                                                                            : f->chat_template);
}

}  // namespace

text::ChatTemplate detect_chat_template(const io::GgufFile& f) {
  namespace key = io::gguf::key;
  bool eot = false;
  if (f.has(key::kTokTokens))
    for (const std::string& s : f.get(key::kTokTokens).strs) eot = eot || s == "<|eot_id|>";
  const std::string arch = f.get_string(key::kArchitecture, "");
  return detect(f.get_string(key::kTokChatTemplate, ""), find_family_arch(arch), eot, f.path(), arch);
}

text::ChatTemplate detect_chat_template(const std::string& hf_dir, const text::Tokenizer& tok) {
  const io::HfConfig cfg = io::read_hf_config(hf_dir);
  const std::string type = cfg.text ? cfg.text->model_type : cfg.model_type;
  const std::vector<int32_t> eot = tok.encode("<|eot_id|>", false, true);
  return detect(text::hf_chat_template_text(hf_dir), find_family_hf(type), eot.size() == 1 && tok.is_special(eot[0]), hf_dir, type);
}

text::ChatTemplate resolve_chat_template(const std::string& name, const std::string& model, const text::Tokenizer& tok) {
  if (!name.empty()) return text::chat_template_from_name(name);
  if (io::is_directory(model)) return detect_chat_template(model, tok);
  return detect_chat_template(io::GgufFile::open(model));
}

}  // namespace ocellus::lm
