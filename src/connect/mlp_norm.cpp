// llama.cpp's "mlp_norm" projector: linear -> LayerNorm -> GELU -> linear -> LayerNorm (tensors
// mm.0, mm.1, mm.3, mm.4: the indices of the nn.Sequential it was converted from).
#include "common.h"

namespace ocellus::connect {
namespace {

template <class F>
class MlpNorm final : public ConnectorOf<F> {
 public:
  MlpNorm(const ConnectorConfig& c, detail::LinearOf<F> l0, detail::NormOf<F> n1, detail::LinearOf<F> l3, detail::NormOf<F> n4)
      : c_(c), l0_(std::move(l0)), n1_(std::move(n1)), l3_(std::move(l3)), n4_(std::move(n4)) {}
  std::string type() const override { return "mlp_norm"; }
  typename F::V forward(const F& f, const typename F::V& x) const override {
    return n4_(f, l3_(f, detail::gelu_of(f, c_, n1_(f, l0_(f, x)))));
  }

 private:
  ConnectorConfig c_;
  detail::LinearOf<F> l0_;
  detail::NormOf<F> n1_;
  detail::LinearOf<F> l3_;
  detail::NormOf<F> n4_;
};

}  // namespace

std::string detail::mlp_norm_out_weight(Layout layout) { return detail::prefix(layout) + "3.weight"; }

template <class F>
std::unique_ptr<ConnectorOf<F>> load_mlp_norm(const ConnectorConfig& c, const nn::Maker<F>& mk, Layout layout) {
  const std::string p = detail::prefix(layout);
  // One statement each: the tensors are read in the Sequential's order (a training maker's
  // parameters, init's random draws and connector_tensors_as follow it).
  auto l0 = detail::load_linear_of(mk, p + "0.weight", p + "0.bias", c.d_out, c.d_in);
  auto n1 = detail::load_norm_of(mk, c, p + "1.", c.d_out);
  auto l3 = detail::load_linear_of(mk, detail::mlp_norm_out_weight(layout), p + "3.bias", c.d_out, c.d_out);
  auto n4 = detail::load_norm_of(mk, c, p + "4.", c.d_out);
  return std::make_unique<MlpNorm<F>>(c, std::move(l0), std::move(n1), std::move(l3), std::move(n4));
}
OCELLUS_CONNECTOR_INSTANTIATE(load_mlp_norm)

}  // namespace ocellus::connect
