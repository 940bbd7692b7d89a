// LLaVA's original "linear" projector: one matrix from vision features to the LM's width.
#include "common.h"

namespace ocellus::connect {
namespace {

template <class F>
class LinearConnector final : public ConnectorOf<F> {
 public:
  explicit LinearConnector(detail::LinearOf<F> l) : l_(std::move(l)) {}
  std::string type() const override { return "linear"; }
  typename F::V forward(const F& f, const typename F::V& x) const override { return l_(f, x); }

 private:
  detail::LinearOf<F> l_;
};

}  // namespace

// HF llava names a single projection linear_1; original LLaVA "model.mm_projector.weight".
std::string detail::linear_out_weight(Layout layout) {
  return layout == Layout::LlavaOriginal ? "model.mm_projector.weight" : detail::layer_name(layout, 0, 1, "weight");
}

template <class F>
std::unique_ptr<ConnectorOf<F>> load_linear(const ConnectorConfig& c, const nn::Maker<F>& mk, Layout layout) {
  const std::string b = layout == Layout::LlavaOriginal ? "model.mm_projector.bias" : detail::layer_name(layout, 0, 1, "bias");
  return std::make_unique<LinearConnector<F>>(detail::load_linear_of(mk, detail::linear_out_weight(layout), b, c.d_out, c.d_in));
}
OCELLUS_CONNECTOR_INSTANTIATE(load_linear)

}  // namespace ocellus::connect
