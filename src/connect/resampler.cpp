// A Perceiver-style resampler (as Qwen-VL / MiniCPM-V, without their positional terms): a fixed
// set of learned queries cross-attends to the projected features, so every image becomes the
// same number of tokens whatever its patch count. Tensors under the projector prefix: query
// [n_query, d_out], kv_proj (no bias), ln_q, ln_kv, attn.{q,k,v,out}, ln_post, proj.
#include <cmath>

#include "common.h"

namespace ocellus::connect {
namespace {

template <class F>
struct ResamplerWeights {
  typename F::P query;                      // [n_query, d_out] f32
  detail::LinearOf<F> kv_proj;              // [d_out, d_in], no bias
  detail::NormOf<F> ln_q, ln_kv, ln_post;   // [d_out]
  detail::LinearOf<F> q, k, v, out;         // [d_out, d_out]
  detail::LinearOf<F> proj;                 // [d_out, d_out]
};

template <class F>
class Resampler final : public ConnectorOf<F> {
 public:
  Resampler(int64_t n_head, ResamplerWeights<F> w) : n_head_(n_head), w_(std::move(w)) {}
  std::string type() const override { return "resampler"; }
  int64_t n_tokens(int64_t) const override { return F::shape(w_.query)[0]; }
  typename F::V forward(const F& f, const typename F::V& x) const override {
    const int64_t nq = F::shape(w_.query)[0], n = F::shape(x)[0], d = F::shape(w_.query)[1], hd = d / n_head_;
    const auto kv = w_.ln_kv(f, w_.kv_proj(f, x));  // [n, d]
    const auto q = w_.ln_q(f, w_.query);            // [nq, d]
    const auto Q = f.reshape(w_.q(f, q), {nq, n_head_, hd});
    const auto K = f.reshape(w_.k(f, kv), {n, n_head_, hd}), V = f.reshape(w_.v(f, kv), {n, n_head_, hd});
    ops::AttentionParams ap;
    ap.scale = 1.0f / std::sqrt(float(hd));
    const auto a = w_.out(f, f.reshape(f.attention(Q, K, V, ap), {nq, d}));
    return w_.proj(f, w_.ln_post(f, a));
  }

 private:
  int64_t n_head_;
  ResamplerWeights<F> w_;
};

}  // namespace

std::string detail::resampler_out_weight(Layout layout) { return detail::prefix(layout) + "proj.weight"; }

template <class F>
std::unique_ptr<ConnectorOf<F>> load_resampler(const ConnectorConfig& c, const nn::Maker<F>& mk, Layout layout) {
  const std::string p = detail::prefix(layout);
  const int64_t d = c.d_out;
  // The query count: the file's when read, the configured one when made new.
  const std::string qn = p + "query";
  if (!mk.has(qn) && c.n_query <= 0) fail("connector resampler: missing tensor '", qn, "'");
  const Shape qs = mk.has(qn) ? mk.shape(qn) : Shape{c.n_query, d};
  OCELLUS_CHECK(qs.ndim == 2 && qs[1] == d && qs[0] > 0, "connector resampler: '", qn, "' has shape ", qs.str(),
                ", expected [n_query, ", d, "]");
  ResamplerWeights<F> w;
  w.query = detail::as_f32(mk.tensor(qn, qs, true));
  w.kv_proj = {mk.matrix(p + "kv_proj.weight", {d, c.d_in}), {}};
  w.ln_q = detail::load_norm_of(mk, c, p + "ln_q.", d), w.ln_kv = detail::load_norm_of(mk, c, p + "ln_kv.", d);
  w.q = detail::load_linear_of(mk, p + "attn.q.weight", p + "attn.q.bias", d, d);
  w.k = detail::load_linear_of(mk, p + "attn.k.weight", p + "attn.k.bias", d, d);
  w.v = detail::load_linear_of(mk, p + "attn.v.weight", p + "attn.v.bias", d, d);
  w.out = detail::load_linear_of(mk, p + "attn.out.weight", p + "attn.out.bias", d, d);
  w.ln_post = detail::load_norm_of(mk, c, p + "ln_post.", d);
  w.proj = detail::load_linear_of(mk, detail::resampler_out_weight(layout), p + "proj.bias", d, d);
  return std::make_unique<Resampler<F>>(detail::n_head(c, d), std::move(w));
}
OCELLUS_CONNECTOR_INSTANTIATE(load_resampler)

}  // namespace ocellus::connect
