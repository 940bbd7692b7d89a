// A text model as a GGUF file in llama.cpp's layout: the names of the GGUF Names table the
// loaders read, llama's Q/K rows in adjacent-pair order (llama.cpp's converter permutes them),
// the family's hyperparameter keys, and the vocabulary; load_gguf reads it back as the same model.
#include <cstring>

#include "family_common.h"
#include "ocellus/core/error.h"
#include "ocellus/text/tokenizer.h"

namespace ocellus::lm {

namespace {

// Rotate-half rows of each head (HF) in adjacent-pair order (llama.cpp).
Tensor adjacent_rows(const Tensor& w, int64_t n_head) {
  const DType dt = w.dtype();
  const Tensor src = w.to(DType::F32).contiguous();
  Tensor out = Tensor::empty(w.shape());
  const int64_t rows = w.dim(0), cols = w.dim(1), hd = rows / n_head;
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < hd / 2; ++i)
      for (int64_t s = 0; s < 2; ++s)
        std::memcpy(out.data<float>() + (h * hd + 2 * i + s) * cols, src.data<float>() + (h * hd + s * hd / 2 + i) * cols,
                    size_t(cols) * sizeof(float));
  return dt == DType::F16 || dt == DType::BF16 ? out.to(dt) : out;
}

}  // namespace

void write_gguf(const LanguageModel& m, const text::Tokenizer& tok, const std::string& path) {
  namespace key = io::gguf::key;
  using io::GgufValue;
  using io::gguf::arch_key;
  const LmConfig& c = m.config();
  const LmWeights& w = m.weights();
  OCELLUS_CHECK(tok.n_vocab() == c.n_vocab, "lm: the tokenizer has ", tok.n_vocab(), " tokens, the model ", c.n_vocab);
  const bool permute = c.arch == "llama" && c.rope.mode == ops::RopeMode::RotateHalf;  // GGUF llama: adjacent pairs
  OCELLUS_CHECK(c.arch != "llama" || c.rope.n_rot == c.head_dim, "lm: partial rotary llama has no GGUF layout");
  OCELLUS_CHECK(c.arch == "llama" || c.rope.mode == ops::RopeMode::RotateHalf, "lm: ", c.arch, " with adjacent-pair rope has no GGUF layout");
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
  const detail::Names n = detail::gguf_names();
  auto add = [&](const std::string& pattern, int i, const Tensor& t) {
    if (!t.defined()) return;
    g.add_tensor(i < 0 ? pattern : io::gguf::name(pattern.c_str(), i), t.contiguous());
  };
  add(n.tok_embd, -1, w.token_embd);
  const int64_t q = c.n_head * c.head_dim, kv = c.n_head_kv * c.head_dim;
  for (int i = 0; i < int(w.layers.size()); ++i) {
    const LayerWeights& L = w.layers[size_t(i)];
    add(n.attn_norm, i, L.attn_norm), add(n.attn_norm_b, i, L.attn_norm_b);
    if (L.wqkv.tensor().defined()) {
      add(n.qkv, i, L.wqkv.tensor()), add(n.qkv_b, i, L.bqkv);
    } else {
      Tensor wq = L.wq.tensor(), wk = L.wk.tensor(), bq = L.bq, bk = L.bk;
      if (permute) {
        wq = adjacent_rows(wq, c.n_head), wk = adjacent_rows(wk, c.n_head_kv);
        if (bq.defined()) bq = adjacent_rows(bq.reshape({q, 1}), c.n_head).reshape({q});
        if (bk.defined()) bk = adjacent_rows(bk.reshape({kv, 1}), c.n_head_kv).reshape({kv});
      }
      add(n.q, i, wq), add(n.q_b, i, bq), add(n.k, i, wk), add(n.k_b, i, bk);
      add(n.v, i, L.wv.tensor()), add(n.v_b, i, L.bv);
    }
    add(n.o, i, L.wo.tensor()), add(n.o_b, i, L.bo);
    add(n.ffn_norm, i, L.ffn_norm), add(n.ffn_norm_b, i, L.ffn_norm_b);
    add(n.gate, i, L.w_gate.tensor()), add(n.up, i, L.w_up.tensor()), add(n.up_b, i, L.b_up);
    add(n.down, i, L.w_down.tensor()), add(n.down_b, i, L.b_down);
  }
  add(n.out_norm, -1, w.out_norm), add(n.out_norm_b, -1, w.out_norm_b);
  if (w.output.tensor().raw() != w.token_embd.raw()) add(n.output, -1, w.output.tensor());
  add(n.output_b, -1, w.output_b);
  g.write(path);
}

}  // namespace ocellus::lm
