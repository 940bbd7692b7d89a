// MobileVLM V2's LDPv2 projector: an MLP (linear -> GELU -> linear), a 2x2 average pool over the
// patch grid (4x fewer tokens), and a position-encoding generator: a depthwise 3x3 convolution
// (padding 1, bias) added to its own input. Tensors: mm.model.mlp.{0,2}, mm.model.peg.0 in
// llama.cpp's GGUF; mlp.{0,2}, peg.peg.0 under the projector prefix in MobileVLM checkpoints.
#include "common.h"

#include "ocellus/ops/grid.h"

namespace ocellus::connect {
namespace {

template <class F>
struct Ldpv2Weights {
  detail::LinearOf<F> l0, l2;     // [d_out, d_in], [d_out, d_out]
  typename F::P peg_w, peg_b;     // depthwise kernel (d_out rows of 3x3 taps), bias [d_out]
};

// The side of the patch grid the features form (even: the pool halves it).
int64_t grid(int64_t n_features) { return ops::grid_side(n_features, "connector ldpv2", true); }

template <class F>
class Ldpv2 final : public ConnectorOf<F> {
 public:
  Ldpv2(const ConnectorConfig& c, Ldpv2Weights<F> w) : c_(c), w_(std::move(w)) {}
  std::string type() const override { return "ldpv2"; }
  int64_t n_tokens(int64_t n_features) const override {
    const int64_t h = grid(n_features) / 2;
    return h * h;
  }
  typename F::V forward(const F& f, const typename F::V& x) const override {
    grid(F::shape(x)[0]);  // a clear error before any work
    const auto m = w_.l2(f, detail::gelu_of(f, c_, w_.l0(f, x)));  // [g·g, d], row-major grid
    const auto pooled = f.avg_pool2(m);                              // [(g/2)², d]
    return f.add(pooled, f.depthwise3x3(pooled, w_.peg_w, w_.peg_b));
  }

 private:
  ConnectorConfig c_;
  Ldpv2Weights<F> w_;
};

std::string mlp_prefix(Layout layout) { return layout == Layout::Gguf ? std::string("mm.model.") : detail::prefix(layout); }

}  // namespace

std::string detail::ldpv2_out_weight(Layout layout) { return mlp_prefix(layout) + "mlp.2.weight"; }

template <class F>
std::unique_ptr<ConnectorOf<F>> load_ldpv2(const ConnectorConfig& c, const nn::Maker<F>& mk, Layout layout) {
  const std::string p = mlp_prefix(layout), peg = layout == Layout::Gguf ? p + "peg.0." : p + "peg.peg.0.";
  const int64_t d = c.d_out;
  Ldpv2Weights<F> w;
  w.l0 = detail::load_linear_of(mk, p + "mlp.0.weight", p + "mlp.0.bias", d, c.d_in);
  w.l2 = detail::load_linear_of(mk, detail::ldpv2_out_weight(layout), p + "mlp.2.bias", d, d);
  // The depthwise kernel is PyTorch's [d, 1, 3, 3]; llama.cpp's converter squeezes it to
  // [d, 3, 3] (the same bytes), and its MobileVLM V2 files hold it so (a maker reads either form
  // in the asked one).
  w.peg_w = mk.tensor(peg + "weight", layout == Layout::Gguf ? Shape{d, 3, 3} : Shape{d, 1, 3, 3}, true);
  w.peg_b = mk.tensor(peg + "bias", {d}, true);
  return std::make_unique<Ldpv2<F>>(c, std::move(w));
}
OCELLUS_CONNECTOR_INSTANTIATE(load_ldpv2)

}  // namespace ocellus::connect
