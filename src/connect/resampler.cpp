// A Perceiver-style resampler (as Qwen-VL / MiniCPM-V, without their positional terms): a fixed
// set of learned queries cross-attends to the projected features, so every image becomes the
// same number of tokens whatever its patch count. Tensors under the projector prefix: query
// [n_query, d_out], kv_proj (no bias), ln_q, ln_kv, attn.{q,k,v,out}, ln_post, proj.
#include "common.h"

namespace ocellus::connect {
namespace {

class Resampler final : public ConnectorOf<nn::Infer> {
 public:
  Resampler(Tensor query, detail::Linear kv, detail::Norm ln_q, detail::Norm ln_kv, detail::Mha attn, detail::Norm ln_post,
            detail::Linear proj)
      : query_(std::move(query)), kv_(std::move(kv)), ln_q_(std::move(ln_q)), ln_kv_(std::move(ln_kv)),
        attn_(std::move(attn)), ln_post_(std::move(ln_post)), proj_(std::move(proj)) {}
  std::string type() const override { return "resampler"; }
  int64_t n_tokens(int64_t) const override { return query_.dim(0); }
  Tensor forward(const nn::Infer&, const Tensor& x) const override {
    const Tensor kv = ln_kv_(kv_(x));
    return proj_(ln_post_(attn_(ln_q_(query_), kv)));
  }

 private:
  Tensor query_;
  detail::Linear kv_;
  detail::Norm ln_q_, ln_kv_;
  detail::Mha attn_;
  detail::Norm ln_post_;
  detail::Linear proj_;
};

}  // namespace

std::string detail::resampler_out_weight(Layout layout) { return detail::prefix(layout) + "proj.weight"; }

// Not yet over both contexts: inference only (see registry.cpp).
std::unique_ptr<ConnectorOf<nn::Infer>> load_resampler_source(const ConnectorConfig& c, const io::TensorSource& s, Layout layout) {
  const std::string p = detail::prefix(layout);
  const int64_t d = c.d_out;
  OCELLUS_CHECK(s.has(p + "query"), s.path, ": connector resampler: missing tensor '", p, "query'");
  const Tensor q0 = s.get(p + "query");
  OCELLUS_CHECK(q0.ndim() == 2 && q0.dim(1) == d && q0.dim(0) > 0, s.path, ": connector resampler: '", p, "query' has shape ",
                q0.shape().str(), ", expected [n_query, ", d, "]");
  Tensor query = q0.to(DType::F32).contiguous();
  return std::make_unique<Resampler>(std::move(query), detail::load_linear_layer(c, s, p + "kv_proj.weight", "", d, c.d_in),
                                     detail::load_norm(c, s, p + "ln_q.", d), detail::load_norm(c, s, p + "ln_kv.", d),
                                     detail::load_mha(c, s, p + "attn.", d), detail::load_norm(c, s, p + "ln_post.", d),
                                     detail::load_linear_layer(c, s, detail::resampler_out_weight(layout), p + "proj.bias", d, d));
}

}  // namespace ocellus::connect
