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
  using io::gguf::arch_key;
  const LmConfig& c = m.config();
  const LmWeights& w = m.weights();
  OCELLUS_CHECK(tok.n_vocab() == c.n_vocab, "lm: the tokenizer has ", tok.n_vocab(), " tokens, the model ", c.n_vocab);
  // The Q/K rows in the order llama.cpp's files of the family have (llama: adjacent pairs).
  const bool adjacent = family_by_arch(c.arch).gguf_rope == ops::RopeMode::Adjacent;
  const bool permute = adjacent && c.rope.mode == ops::RopeMode::RotateHalf;
  OCELLUS_CHECK(!adjacent || c.rope.n_rot == c.head_dim, "lm: partial rotary ", c.arch, " has no GGUF layout");
  OCELLUS_CHECK(adjacent || c.rope.mode == ops::RopeMode::RotateHalf, "lm: ", c.arch, " with adjacent-pair rope has no GGUF layout");
  io::GgufWriter g;
  const std::string& a = c.arch;
  g.set(key::kArchitecture, GgufValue::str(a));
  g.set(key::kName, GgufValue::str("ocellus-export"));
  g.set(arch_key(a, key::kContextLength), GgufValue::u32(uint32_t(c.n_ctx)));
  g.set(arch_key(a, key::kEmbeddingLength), GgufValue::u32(uint32_t(c.n_embd)));
  g.set(arch_key(a, key::kBlockCount), GgufValue::u32(uint32_t(c.n_layer)));
  g.set(arch_key(a, key::kFeedForwardLength), GgufValue::u32(uint32_t(c.n_ff)));
  g.set(arch_key(a, key::kHeadCount), GgufValue::u32(uint32_t(c.n_head)));
  g.set(arch_key(a, key::kHeadCountKv), GgufValue::u32(uint32_t(c.n_head_kv)));
  g.set(arch_key(a, key::kRopeFreqBase), GgufValue::f32(c.rope.theta));
  g.set(arch_key(a, key::kRopeDimensionCount), GgufValue::u32(uint32_t(c.rope.n_rot)));
  g.set(arch_key(a, c.norm == NormKind::Rms ? key::kRmsEps : key::kLayerNormEps), GgufValue::f32(c.norm_eps));
  g.set(arch_key(a, key::kVocabSize), GgufValue::u32(uint32_t(c.n_vocab)));
  tok.save_gguf(g);
  if (!chat_template.empty()) g.set(key::kTokChatTemplate, GgufValue::str(chat_template));
  detail::for_each_named_weight(c, w, detail::gguf_names(), false, permute ? detail::QkRows::ToAdjacent : detail::QkRows::Keep,
                                [&](const std::string& n, const Tensor& t) { g.add_tensor(n, t); });
  g.write(path);
}

}  // namespace ocellus::lm
