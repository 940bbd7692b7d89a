// LLaVA's original "linear" projector: one matrix from vision features to the LM's width.
#include "common.h"

namespace ocellus::connect {
namespace {

class LinearConnector final : public Connector {
 public:
  explicit LinearConnector(detail::Linear l) : l_(std::move(l)) {}
  std::string type() const override { return "linear"; }
  int64_t n_tokens(int64_t n_features) const override { return n_features; }
  Tensor forward(const Tensor& x) const override { return l_(x); }

 private:
  detail::Linear l_;
};

}  // namespace

// HF llava names a single projection linear_1; original LLaVA "model.mm_projector.weight".
std::string detail::linear_out_weight(Layout layout) {
  return layout == Layout::LlavaOriginal ? "model.mm_projector.weight" : detail::layer_name(layout, 0, 1, "weight");
}

std::unique_ptr<Connector> load_linear(const ConnectorConfig& c, const io::TensorSource& s, Layout layout) {
  const std::string b = layout == Layout::LlavaOriginal ? "model.mm_projector.bias" : detail::layer_name(layout, 0, 1, "bias");
  return std::make_unique<LinearConnector>(detail::load_linear_layer(c, s, detail::linear_out_weight(layout), b, c.d_out, c.d_in));
}

}  // namespace ocellus::connect
