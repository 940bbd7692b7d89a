// A text model as a GGUF file in llama.cpp's layout: the names of the GGUF Names table the
// loaders read, Q/K rows in the family's GGUF order (llama.cpp's converter permutes llama's to
// adjacent pairs), the family's hyperparameter keys, and the vocabulary; load_gguf reads it back
// as the same model.
#include "family_common.h"
#include "ocellus/core/error.h"
#include "ocellus/text/tokenizer.h"

namespace ocellus::lm {

void write_gguf(const LanguageModel& m, const text::Tokenizer& tok, const std::string& path, const std::string& chat_template) {
  namespace key = io::gguf::key;
  using io::GgufValue;
  const LmConfig& c = m.config();
  const LmWeights& w = m.weights();
  OCELLUS_CHECK(tok.n_vocab() == c.n_vocab, "lm: the tokenizer has ", tok.n_vocab(), " tokens, the model ", c.n_vocab);
  io::GgufWriter g;
  g.set(key::kArchitecture, GgufValue::str(c.arch));
  g.set(key::kName, GgufValue::str("ocellus-export"));
  set_gguf_config(g, c);
  tok.save_gguf(g);
  if (!chat_template.empty()) g.set(key::kTokChatTemplate, GgufValue::str(chat_template));
  // The Q/K rows in the order llama.cpp's files of the family have (llama: adjacent pairs).
  detail::for_each_named_weight(c, w, detail::gguf_names(), family_by_arch(c.arch).gguf_rope,
                                [&](const std::string& n, const Tensor& t) { g.add_tensor(n, t); });
  g.write(path);
}

}  // namespace ocellus::lm
