#pragma once
// Weight loading shared by the family files: the standard attention and FFN tensors of a block.
#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/lm/lm.h"

namespace ocellus::lm::detail {

namespace tn = io::gguf::tensor;
using io::gguf::name;

// Separate q, k, v (with biases when the file has them) and the output projection.
inline void load_attention(const io::GgufFile& f, const LmConfig& c, int i, LayerWeights& L) {
  const int64_t d = c.n_embd, q = c.n_head * c.head_dim, kv = c.n_head_kv * c.head_dim;
  L.wq = ops::PreparedWeight(required(f, name(tn::kAttnQ, i), {q, d}));
  L.wk = ops::PreparedWeight(required(f, name(tn::kAttnK, i), {kv, d}));
  L.wv = ops::PreparedWeight(required(f, name(tn::kAttnV, i), {kv, d}));
  L.bq = optional_tensor(f, name(tn::kAttnQBias, i), {q});
  L.bk = optional_tensor(f, name(tn::kAttnKBias, i), {kv});
  L.bv = optional_tensor(f, name(tn::kAttnVBias, i), {kv});
  L.wo = ops::PreparedWeight(required(f, name(tn::kAttnOutput, i), {d, q}));
  L.bo = optional_tensor(f, name(tn::kAttnOutputBias, i), {d});
}

// SwiGLU feed-forward: gate, up, down.
inline void load_gated_ffn(const io::GgufFile& f, const LmConfig& c, int i, LayerWeights& L) {
  L.w_gate = ops::PreparedWeight(required(f, name(tn::kFfnGate, i), {c.n_ff, c.n_embd}));
  L.w_up = ops::PreparedWeight(required(f, name(tn::kFfnUp, i), {c.n_ff, c.n_embd}));
  L.w_down = ops::PreparedWeight(required(f, name(tn::kFfnDown, i), {c.n_embd, c.n_ff}));
}

// Output norm and head; the head is the token embedding when the file has no output.weight.
inline void load_output(const io::GgufFile& f, const LmConfig& c, LmWeights& w, bool norm_bias) {
  w.out_norm = required(f, tn::kOutputNorm, {c.n_embd});
  if (norm_bias) w.out_norm_b = required(f, tn::kOutputNormBias, {c.n_embd});
  const Tensor out = optional_tensor(f, tn::kOutput, {c.n_vocab, c.n_embd});
  w.output = ops::PreparedWeight(out.defined() ? out : w.token_embd);
  w.output_b = optional_tensor(f, tn::kOutputBias, {c.n_vocab});
}

}  // namespace ocellus::lm::detail
