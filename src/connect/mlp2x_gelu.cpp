// LLaVA-1.5 / TinyLLaVA "mlp2x_gelu": linear -> GELU -> linear (llama.cpp's projector type "mlp").
#include "common.h"

namespace ocellus::connect {
namespace {

template <class F>
class Mlp2xGelu final : public ConnectorOf<F> {
 public:
  Mlp2xGelu(const ConnectorConfig& c, detail::LinearOf<F> l1, detail::LinearOf<F> l2) : c_(c), l1_(std::move(l1)), l2_(std::move(l2)) {}
  std::string type() const override { return "mlp2x_gelu"; }
  typename F::V forward(const F& f, const typename F::V& x) const override { return l2_(f, detail::gelu_of(f, c_, l1_(f, x))); }

 private:
  ConnectorConfig c_;
  detail::LinearOf<F> l1_, l2_;
};

}  // namespace

std::string detail::mlp2x_gelu_out_weight(Layout layout) { return detail::layer_name(layout, 2, 2, "weight"); }

template <class F>
std::unique_ptr<ConnectorOf<F>> load_mlp2x_gelu(const ConnectorConfig& c, const nn::Maker<F>& mk, Layout layout) {
  using detail::layer_name;
  auto l1 = detail::load_linear_of(mk, layer_name(layout, 0, 1, "weight"), layer_name(layout, 0, 1, "bias"), c.d_out, c.d_in);
  auto l2 = detail::load_linear_of(mk, detail::mlp2x_gelu_out_weight(layout), layer_name(layout, 2, 2, "bias"), c.d_out, c.d_out);
  return std::make_unique<Mlp2xGelu<F>>(c, std::move(l1), std::move(l2));
}
OCELLUS_CONNECTOR_INSTANTIATE(load_mlp2x_gelu)

}  // namespace ocellus::connect
