// llama.cpp's "mlp_norm" projector: linear -> LayerNorm -> GELU -> linear -> LayerNorm (tensors
// mm.0, mm.1, mm.3, mm.4: the indices of the nn.Sequential it was converted from).
#include "common.h"

namespace ocellus::connect {
namespace {

class MlpNorm final : public Connector {
 public:
  MlpNorm(const ConnectorConfig& c, detail::Linear l0, detail::Norm n1, detail::Linear l3, detail::Norm n4)
      : c_(c), l0_(std::move(l0)), n1_(std::move(n1)), l3_(std::move(l3)), n4_(std::move(n4)) {}
  std::string type() const override { return "mlp_norm"; }
  int64_t n_tokens(int64_t n_features) const override { return n_features; }
  Tensor forward(const Tensor& x) const override { return n4_(l3_(detail::gelu(c_, n1_(l0_(x))))); }

 private:
  ConnectorConfig c_;
  detail::Linear l0_;
  detail::Norm n1_;
  detail::Linear l3_;
  detail::Norm n4_;
};

}  // namespace

std::string detail::mlp_norm_out_weight(Layout layout) { return detail::prefix(layout) + "3.weight"; }

std::unique_ptr<Connector> load_mlp_norm(const ConnectorConfig& c, const io::TensorSource& s, Layout layout) {
  const std::string p = detail::prefix(layout);
  auto l0 = detail::load_linear_layer(c, s, p + "0.weight", p + "0.bias", c.d_out, c.d_in);
  auto l3 = detail::load_linear_layer(c, s, detail::mlp_norm_out_weight(layout), p + "3.bias", c.d_out, c.d_out);
  return std::make_unique<MlpNorm>(c, std::move(l0), detail::load_norm(c, s, p + "1.", c.d_out), std::move(l3),
                                   detail::load_norm(c, s, p + "4.", c.d_out));
}

}  // namespace ocellus::connect
