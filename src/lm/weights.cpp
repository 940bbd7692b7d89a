// Loading a decoder's weights from any Source under any Names (see family_common.h); GGUF's names.
#include <cstdio>
#include <cstring>

#include "family_common.h"
#include "ocellus/core/error.h"

namespace ocellus::lm::detail {

Names gguf_names() {
  namespace tn = io::gguf::tensor;
  Names n;
  n.tok_embd = tn::kTokenEmbd, n.out_norm = tn::kOutputNorm, n.out_norm_b = tn::kOutputNormBias;
  n.output = tn::kOutput, n.output_b = tn::kOutputBias;
  n.attn_norm = tn::kAttnNorm, n.attn_norm_b = tn::kAttnNormBias;
  n.q = tn::kAttnQ, n.q_b = tn::kAttnQBias, n.k = tn::kAttnK, n.k_b = tn::kAttnKBias, n.v = tn::kAttnV;
  n.v_b = tn::kAttnVBias, n.qkv = tn::kAttnQkv, n.qkv_b = tn::kAttnQkvBias, n.o = tn::kAttnOutput;
  n.o_b = tn::kAttnOutputBias, n.ffn_norm = tn::kFfnNorm, n.ffn_norm_b = tn::kFfnNormBias;
  n.gate = tn::kFfnGate, n.up = tn::kFfnUp, n.up_b = tn::kFfnUpBias, n.down = tn::kFfnDown, n.down_b = tn::kFfnDownBias;
  return n;
}

namespace {
// The rows of each of n_head heads of a Q or K matrix [n_head * hd, k] (or bias as [n, 1])
// reordered between llama.cpp's adjacent pairs (its converter's permutation) and Hugging
// Face's rotate-half halves. f16 / bf16 stay so; other dtypes come back f32.
Tensor permute_head_rows(const Tensor& w, int64_t n_head, bool to_adjacent) {
  const DType dt = w.dtype();
  const Tensor src = w.to(DType::F32).contiguous();
  Tensor out = Tensor::empty(w.shape());
  const int64_t rows = w.dim(0), cols = w.dim(1), hd = rows / n_head;
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < hd / 2; ++i)
      for (int64_t s = 0; s < 2; ++s) {
        const int64_t adjacent = h * hd + 2 * i + s, half = h * hd + s * hd / 2 + i;
        std::memcpy(out.data<float>() + (to_adjacent ? adjacent : half) * cols,
                    src.data<float>() + (to_adjacent ? half : adjacent) * cols, size_t(cols) * sizeof(float));
      }
  return dt == DType::F16 || dt == DType::BF16 ? out.to(dt) : out;
}
}  // namespace

void for_each_named_weight(const LmConfig& c, const LmWeights& w, const Names& n, ops::RopeMode rows,
                           const std::function<void(const std::string&, const Tensor&)>& fn) {
  const bool reordered = c.rope.mode != rows;
  OCELLUS_CHECK(!reordered || c.rope.n_rot == c.head_dim, "lm: ", c.arch, " with partial rotary has no layout in the other Q/K row order");
  auto emit = [&](const std::string& pattern, int i, const Tensor& t) {
    if (!t.defined()) return;
    OCELLUS_CHECK(!pattern.empty(), "lm: ", c.arch, " has a tensor this layout cannot name");
    fn(i < 0 ? pattern : io::gguf::name(pattern.c_str(), i), t.contiguous());
  };
  auto reorder = [&](const Tensor& t, int64_t heads) {
    if (!t.defined() || !reordered) return t;
    const bool bias = t.ndim() == 1;
    const Tensor m = bias ? t.reshape({t.dim(0), 1}) : t;
    const Tensor r = permute_head_rows(m, heads, rows == ops::RopeMode::Adjacent);
    return bias ? r.reshape({t.dim(0)}) : r;
  };
  emit(n.tok_embd, -1, w.token_embd);
  const int64_t q = c.n_head * c.head_dim, kv = c.n_head_kv * c.head_dim;
  for (int i = 0; i < int(w.layers.size()); ++i) {
    const LayerWeights& L = w.layers[size_t(i)];
    emit(n.attn_norm, i, L.attn_norm), emit(n.attn_norm_b, i, L.attn_norm_b);
    if (L.wqkv.tensor().defined() && !n.qkv.empty()) {
      emit(n.qkv, i, L.wqkv.tensor()), emit(n.qkv_b, i, L.bqkv);
    } else {
      Tensor wq = L.wq.tensor(), wk = L.wk.tensor(), wv = L.wv.tensor(), bq = L.bq, bk = L.bk, bv = L.bv;
      if (L.wqkv.tensor().defined()) {
        const Tensor f = L.wqkv.tensor();
        wq = f.slice(0, 0, q), wk = f.slice(0, q, q + kv), wv = f.slice(0, q + kv, q + 2 * kv);
        if (L.bqkv.defined()) bq = L.bqkv.slice(0, 0, q), bk = L.bqkv.slice(0, q, q + kv), bv = L.bqkv.slice(0, q + kv, q + 2 * kv);
      }
      emit(n.q, i, reorder(wq.contiguous(), c.n_head)), emit(n.q_b, i, reorder(bq.defined() ? bq.contiguous() : bq, c.n_head));
      emit(n.k, i, reorder(wk.contiguous(), c.n_head_kv)), emit(n.k_b, i, reorder(bk.defined() ? bk.contiguous() : bk, c.n_head_kv));
      emit(n.v, i, wv), emit(n.v_b, i, bv);
    }
    emit(n.o, i, L.wo.tensor()), emit(n.o_b, i, L.bo);
    emit(n.ffn_norm, i, L.ffn_norm), emit(n.ffn_norm_b, i, L.ffn_norm_b);
    emit(n.gate, i, L.w_gate.tensor()), emit(n.up, i, L.w_up.tensor()), emit(n.up_b, i, L.b_up);
    emit(n.down, i, L.w_down.tensor()), emit(n.down_b, i, L.b_down);
  }
  emit(n.out_norm, -1, w.out_norm), emit(n.out_norm_b, -1, w.out_norm_b);
  if (w.output.tensor().raw() != w.token_embd.raw()) emit(n.output, -1, w.output.tensor());
  emit(n.output_b, -1, w.output_b);
}

namespace {
std::string at(const std::string& pattern, int i) {
  return pattern.find("%d") == std::string::npos ? pattern : io::gguf::name(pattern.c_str(), i);
}
}  // namespace

template <class F>
DecoderWeights<F> load_weights(const nn::Maker<F>& mk, const Names& n, const LmConfig& c, const Layout& l) {
  const int64_t d = c.n_embd, q = c.n_head * c.head_dim, kv = c.n_head_kv * c.head_dim;
  auto vec = [&](const std::string& name, int64_t len, bool required) { return mk.tensor(name, {len}, required); };
  DecoderWeights<F> w;
  w.token_embd = mk.tensor(n.tok_embd, {c.n_vocab, d}, true);
  for (int i = 0; i < int(c.n_layer); ++i) {
    DecoderLayer<F> L;
    L.attn_norm = vec(at(n.attn_norm, i), d, true);
    if (l.norm_bias) L.attn_norm_b = vec(at(n.attn_norm_b, i), d, true);
    if (!n.qkv.empty() && mk.has(at(n.qkv, i))) {
      L.wqkv = mk.matrix(at(n.qkv, i), {q + 2 * kv, d});
      L.bqkv = vec(at(n.qkv_b, i), q + 2 * kv, false);
    } else {
      L.wq = mk.matrix(at(n.q, i), {q, d});
      L.bq = vec(at(n.q_b, i), q, false);
      L.wk = mk.matrix(at(n.k, i), {kv, d});
      L.bk = vec(at(n.k_b, i), kv, false);
      L.wv = mk.matrix(at(n.v, i), {kv, d});
      L.bv = vec(at(n.v_b, i), kv, false);
    }
    L.wo = mk.matrix(at(n.o, i), {d, q});
    L.bo = vec(at(n.o_b, i), d, false);
    if (l.separate_ffn_norm) {
      L.ffn_norm = vec(at(n.ffn_norm, i), d, true);
      if (l.norm_bias) L.ffn_norm_b = vec(at(n.ffn_norm_b, i), d, true);
    }
    if (l.gated) L.w_gate = mk.matrix(at(n.gate, i), {c.n_ff, d});
    L.w_up = mk.matrix(at(n.up, i), {c.n_ff, d});
    L.b_up = vec(at(n.up_b, i), c.n_ff, false);
    L.w_down = mk.matrix(at(n.down, i), {d, c.n_ff});
    L.b_down = vec(at(n.down_b, i), d, false);
    w.layers.push_back(std::move(L));
  }
  w.out_norm = vec(n.out_norm, d, true);
  if (l.norm_bias) w.out_norm_b = vec(n.out_norm_b, d, true);
  const typename F::P out = mk.tensor(n.output, {c.n_vocab, d}, false);  // absent: tied to the embedding
  w.output = F::matrix(F::has(out) ? out : w.token_embd);
  w.output_b = vec(n.output_b, c.n_vocab, false);
  return w;
}

template DecoderWeights<nn::Infer> load_weights(const nn::Maker<nn::Infer>&, const Names&, const LmConfig&, const Layout&);
template DecoderWeights<nn::Train> load_weights(const nn::Maker<nn::Train>&, const Names&, const LmConfig&, const Layout&);

std::unique_ptr<LanguageModel> make_model(LmConfig c, const Source& s, const Names& n, const Layout& l) {
  c.validate();
  LmWeights w = load_weights(nn::file_maker(s, "lm"), n, c, l);
  return std::make_unique<LanguageModel>(std::move(c), std::move(w));
}

}  // namespace ocellus::lm::detail
