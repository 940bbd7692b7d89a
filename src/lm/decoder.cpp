// The decoder shared by every family: embeddings, pre-norm blocks (sequential or parallel),
// grouped-query attention over the KV cache, output norm and head.
#include <cmath>
#include <cstring>

#include "ocellus/core/error.h"
#include "ocellus/lm/lm.h"
#include "ocellus/ops/attention.h"
#include "ocellus/ops/embed.h"
#include "ocellus/ops/elementwise.h"
#include "ocellus/ops/shape.h"

namespace ocellus::lm {

void LmConfig::validate() const {
  auto need = [&](bool ok, const char* what, int64_t v) {
    if (!ok) fail("lm: ", arch, ": ", what, " = ", v, " is invalid");
  };
  need(n_embd > 0, "n_embd", n_embd);
  need(n_layer > 0 && n_layer <= 4096, "n_layer", n_layer);
  need(n_head > 0 && n_embd % n_head == 0, "n_head", n_head);
  need(n_head_kv > 0 && n_head % n_head_kv == 0, "n_head_kv", n_head_kv);
  need(head_dim > 0, "head_dim", head_dim);
  need(n_vocab > 0, "n_vocab", n_vocab);
  need(n_ff > 0, "n_ff", n_ff);
  need(rope.n_rot > 0 && rope.n_rot <= head_dim && rope.n_rot % 2 == 0, "rope dimension count", rope.n_rot);
}

KvCache::KvCache(const LmConfig& c, int64_t n_ctx, DType type) : n_ctx_(n_ctx), type_(type) {
  OCELLUS_CHECK(n_ctx > 0, "lm: KV cache of ", n_ctx, " positions");
  OCELLUS_CHECK(type == DType::F16 || type == DType::F32, "lm: KV cache type ", dtype_name(type), " (f16 or f32)");
  for (int64_t l = 0; l < c.n_layer; ++l) {
    k_.push_back(Tensor::empty({n_ctx, c.n_head_kv, c.head_dim}));
    v_.push_back(Tensor::empty({n_ctx, c.n_head_kv, c.head_dim}));
  }
}

Tensor LanguageModel::embed(const std::vector<int32_t>& ids) const { return ops::embedding(w_.token_embd, ids); }

namespace {

// Copies rows [n] of src [n, h, d] into dst at row offset `at`, at the cache's precision.
void store_rows(Tensor& dst, const Tensor& src, int64_t at, DType type) {
  const Tensor s = type == DType::F16 ? src.to(DType::F16).to(DType::F32) : src.contiguous();
  std::memcpy(dst.data<float>() + at * dst.dim(1) * dst.dim(2), s.data<float>(), s.nbytes());
}

}  // namespace

void KvCache::truncate(int64_t n) {
  OCELLUS_CHECK(n >= 0 && n <= n_past_, "lm: KV cache truncated to ", n, " of ", n_past_, " positions");
  n_past_ = n;
}

Tensor LanguageModel::forward(const Tensor& x_in, KvCache& cache, bool all_logits) const {
  Tensor x = run_layers(x_in, {{&cache, x_in.dim(0)}}, w_.layers, true, true);
  if (!all_logits) x = x.slice(0, x.dim(0) - 1, x.dim(0)).contiguous();
  nn::Infer f;
  f.ggml_matmul = c_.f32_ggml_order;
  return decoder_head(f, c_, w_, x);
}

Tensor LanguageModel::hidden(const Tensor& x, KvCache& cache) const {
  nn::Infer f;
  f.ggml_matmul = c_.f32_ggml_order;
  return decoder_norm(f, c_, run_layers(x, {{&cache, x.dim(0)}}, w_.layers, true, true), w_.out_norm, w_.out_norm_b);
}

Tensor LanguageModel::forward_batch(const Tensor& x_in, const std::vector<KvCache*>& caches, const std::vector<int64_t>& counts) const {
  OCELLUS_CHECK(!caches.empty() && caches.size() == counts.size(), "lm: ", caches.size(), " caches for ", counts.size(), " row counts");
  std::vector<Segment> seqs;
  std::vector<int64_t> last;  // each sequence's last row
  int64_t n = 0;
  for (size_t i = 0; i < caches.size(); ++i) {
    OCELLUS_CHECK(counts[i] > 0, "lm: sequence ", i, " of the batch has no rows");
    seqs.push_back({caches[i], counts[i]});
    n += counts[i];
    last.push_back(n - 1);
  }
  OCELLUS_CHECK(x_in.ndim() == 2 && x_in.dim(0) == n, "lm: batch input of shape ", x_in.shape().str(), " for ", n, " rows");
  Tensor x = run_layers(x_in, seqs, w_.layers, true, true);
  if (int64_t(last.size()) != n) {
    std::vector<Tensor> rows;
    for (int64_t r : last) rows.push_back(x.slice(0, r, r + 1));
    x = ops::concat(rows, 0);
  }
  nn::Infer f;
  f.ggml_matmul = c_.f32_ggml_order;
  return decoder_head(f, c_, w_, x);
}

Tensor LanguageModel::forward_rows(const Tensor& x, KvCache& cache, const std::vector<LayerWeights>& layers, bool keep) const {
  OCELLUS_CHECK(int64_t(layers.size()) == c_.n_layer, "lm: ", layers.size(), " layers given to a model of ", c_.n_layer);
  return run_layers(x, {{&cache, x.dim(0)}}, layers, false, keep);
}

Tensor LanguageModel::run_layers(const Tensor& x_in, const std::vector<Segment>& seqs, const std::vector<LayerWeights>& layers,
                                 bool causal, bool keep) const {
  OCELLUS_CHECK(x_in.ndim() == 2 && x_in.dim(1) == c_.n_embd, "lm: input of shape ", x_in.shape().str(),
                ", expected [n, ", c_.n_embd, "]");
  std::vector<int32_t> pos;
  std::vector<int64_t> past;
  for (const Segment& s : seqs) {
    const KvCache& cache = *s.cache;
    OCELLUS_CHECK(int64_t(cache.k_.size()) == c_.n_layer, "lm: KV cache made for another model");
    if (cache.n_past() + s.n > cache.capacity())
      fail("lm: ", cache.n_past(), " cached + ", s.n, " new positions exceed the context of ", cache.capacity(),
           " (start a new sequence or use a larger context)");
    OCELLUS_CHECK(cache.type_ == seqs[0].cache->type_, "lm: a batch over KV caches of different types");
    past.push_back(cache.n_past());
    for (int64_t i = 0; i < s.n; ++i) pos.push_back(int32_t(cache.n_past() + i));
  }
  const DType kv_type = seqs[0].cache->type_;
  const int64_t hd = c_.head_dim;
  ops::AttentionParams ap;
  ap.scale = c_.prescale_q ? 1.0f : 1.0f / std::sqrt(float(hd));
  ap.causal = causal;
  ap.f16_probs = kv_type == DType::F16;
  nn::Infer f;
  f.ggml_matmul = c_.f32_ggml_order;
  f.act_f16 = c_.gelu_f16_table;

  Tensor x = x_in;  // [n, n_embd]
  for (int64_t l = 0; l < c_.n_layer; ++l) {
    // Attention over each sequence's cache: its rows' keys and values appended, then every
    // position of that sequence so far.
    auto attend = [&](Tensor q, const Tensor& k, const Tensor& v) {
      if (c_.prescale_q) q = ops::scale(q, 1.0f / std::sqrt(float(hd)));
      if (kv_type == DType::F16) q = q.to(DType::F16).to(DType::F32);
      std::vector<Tensor> outs;
      int64_t at = 0;
      for (size_t i = 0; i < seqs.size(); ++i) {
        const int64_t m = seqs[i].n;
        Tensor& kc = seqs[i].cache->k_[size_t(l)];
        Tensor& vc = seqs[i].cache->v_[size_t(l)];
        const bool whole = seqs.size() == 1;
        store_rows(kc, whole ? k : k.slice(0, at, at + m), past[i], kv_type);
        store_rows(vc, whole ? v : v.slice(0, at, at + m), past[i], kv_type);
        const Tensor qi = whole ? q : q.slice(0, at, at + m).contiguous();
        outs.push_back(ops::attention(qi, kc.slice(0, 0, past[i] + m), vc.slice(0, 0, past[i] + m), ap));  // [m, H, hd]
        at += m;
      }
      return outs.size() == 1 ? outs[0] : ops::concat(outs, 0);
    };
    x = decoder_layer(f, c_, layers[size_t(l)], x, pos, attend);
  }
  if (keep)
    for (size_t i = 0; i < seqs.size(); ++i) seqs[i].cache->n_past_ = past[i] + seqs[i].n;
  return x;
}

}  // namespace ocellus::lm
