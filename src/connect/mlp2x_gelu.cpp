// LLaVA-1.5 / TinyLLaVA "mlp2x_gelu": linear -> GELU -> linear (llama.cpp's projector type "mlp").
#include "common.h"

namespace ocellus::connect {
namespace {

class Mlp2xGelu final : public Connector {
 public:
  Mlp2xGelu(const ConnectorConfig& c, detail::Linear l1, detail::Linear l2) : c_(c), l1_(std::move(l1)), l2_(std::move(l2)) {}
  std::string type() const override { return "mlp2x_gelu"; }
  int64_t n_tokens(int64_t n_features) const override { return n_features; }
  Tensor forward(const Tensor& x) const override {
    Tensor h = l1_(x);  // [n, d_out]
    h = c_.act_ggml_f16 ? ops::activate_ggml_f16(ops::Activation::GeluTanh, h) : ops::activate(c_.act, h);
    return l2_(h);
  }

 private:
  ConnectorConfig c_;
  detail::Linear l1_, l2_;
};

}  // namespace

std::string detail::mlp2x_gelu_out_weight(Layout layout) { return detail::layer_name(layout, 2, 2, "weight"); }

std::unique_ptr<Connector> load_mlp2x_gelu(const ConnectorConfig& c, const io::TensorSource& s, Layout layout) {
  using detail::layer_name;
  auto l1 = detail::load_linear_layer(c, s, layer_name(layout, 0, 1, "weight"), layer_name(layout, 0, 1, "bias"), c.d_out, c.d_in);
  auto l2 = detail::load_linear_layer(c, s, detail::mlp2x_gelu_out_weight(layout), layer_name(layout, 2, 2, "bias"), c.d_out, c.d_out);
  return std::make_unique<Mlp2xGelu>(c, std::move(l1), std::move(l2));
}

}  // namespace ocellus::connect
