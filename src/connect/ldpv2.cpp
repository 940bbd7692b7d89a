// MobileVLM V2's LDPv2 projector: an MLP (linear -> GELU -> linear), a 2x2 average pool over the
// patch grid (4x fewer tokens), and a position-encoding generator: a depthwise 3x3 convolution
// (padding 1, bias) added to its own input. Tensors: mm.model.mlp.{0,2}, mm.model.peg.0 in
// llama.cpp's GGUF; mlp.{0,2}, peg.peg.0 under the projector prefix in MobileVLM checkpoints.
#include "common.h"

#include "ocellus/core/threads.h"

namespace ocellus::connect {
namespace {

class Ldpv2 final : public ConnectorOf<nn::Infer> {
 public:
  Ldpv2(const ConnectorConfig& c, detail::Linear l0, detail::Linear l2, Tensor peg_w, Tensor peg_b)
      : c_(c), l0_(std::move(l0)), l2_(std::move(l2)), peg_w_(std::move(peg_w)), peg_b_(std::move(peg_b)) {}
  std::string type() const override { return "ldpv2"; }
  int64_t n_tokens(int64_t n_features) const override {
    const int64_t g = grid(n_features);
    return (g / 2) * (g / 2);
  }
  Tensor forward(const nn::Infer&, const Tensor& x) const override {
    const int64_t g = grid(x.dim(0)), h = g / 2, d = c_.d_out;
    const Tensor m = l2_(detail::gelu(c_, l0_(x))).contiguous();  // [g*g, d], row-major grid
    const float* mp = m.data<float>();
    Tensor pooled = Tensor::empty({h * h, d});
    float* pp = pooled.data<float>();
    for (int64_t y = 0; y < h; ++y)
      for (int64_t xx = 0; xx < h; ++xx) {
        const float* a = mp + ((2 * y) * g + 2 * xx) * d;
        const float* b = a + d;
        const float* c = a + g * d;
        const float* e = c + d;
        float* o = pp + (y * h + xx) * d;
        for (int64_t k = 0; k < d; ++k) o[k] = (a[k] + b[k] + c[k] + e[k]) * 0.25f;
      }
    // out = pooled + depthwise_conv3x3(pooled) + bias, channels last.
    Tensor out = Tensor::empty({h * h, d});
    float* op = out.data<float>();
    const float* w = peg_w_.data<float>();  // [d, 1, 3, 3]
    const float* bias = peg_b_.data<float>();
    parallel_for(h * h, 4, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t y = r / h, xx = r % h;
        float* o = op + r * d;
        for (int64_t k = 0; k < d; ++k) o[k] = bias[k];
        for (int64_t dy = -1; dy <= 1; ++dy)
          for (int64_t dx = -1; dx <= 1; ++dx) {
            const int64_t sy = y + dy, sx = xx + dx;
            if (sy < 0 || sy >= h || sx < 0 || sx >= h) continue;
            const float* in = pp + (sy * h + sx) * d;
            const int64_t tap = (dy + 1) * 3 + (dx + 1);
            for (int64_t k = 0; k < d; ++k) o[k] += w[k * 9 + tap] * in[k];
          }
        const float* in = pp + r * d;
        for (int64_t k = 0; k < d; ++k) o[k] += in[k];
      }
    });
    return out;
  }

 private:
  static int64_t grid(int64_t n) {
    int64_t g = 0;
    while ((g + 1) * (g + 1) <= n) ++g;
    OCELLUS_CHECK(g * g == n && g % 2 == 0, "connector ldpv2: ", n, " features are not an even square grid of patches");
    return g;
  }
  ConnectorConfig c_;
  detail::Linear l0_, l2_;
  Tensor peg_w_, peg_b_;
};

}  // namespace

std::string detail::ldpv2_out_weight(Layout layout) {
  return (layout == Layout::Gguf ? std::string("mm.model.") : detail::prefix(layout)) + "mlp.2.weight";
}

// Not yet over both contexts: inference only (see registry.cpp).
std::unique_ptr<ConnectorOf<nn::Infer>> load_ldpv2_source(const ConnectorConfig& c, const io::TensorSource& s, Layout layout) {
  const std::string p = layout == Layout::Gguf ? "mm.model." : detail::prefix(layout);
  const std::string peg = layout == Layout::Gguf ? p + "peg.0." : p + "peg.peg.0.";
  auto l0 = detail::load_linear_layer(c, s, p + "mlp.0.weight", p + "mlp.0.bias", c.d_out, c.d_in);
  auto l2 = detail::load_linear_layer(c, s, detail::ldpv2_out_weight(layout), p + "mlp.2.bias", c.d_out, c.d_out);
  const io::TensorReader r{s, "connector"};
  // The depthwise kernel [d, 1, 3, 3]; llama.cpp's converter squeezes it to [d, 3, 3] (the same
  // bytes), and its MobileVLM V2 files hold it so.
  const std::string wn = peg + "weight";
  OCELLUS_CHECK(s.has(wn), "connector: ", s.path, ": missing tensor '", wn, "'");
  Tensor w = s.get(wn);
  OCELLUS_CHECK(w.shape() == Shape({c.d_out, 1, 3, 3}) || w.shape() == Shape({c.d_out, 3, 3}), "connector: ", s.path,
                ": tensor '", wn, "' has shape ", w.shape().str(), ", expected [", c.d_out, ", 1, 3, 3] (or [", c.d_out, ", 3, 3])");
  w = w.to(DType::F32).contiguous();
  Tensor b = r.get(peg + "bias", {c.d_out}, true);
  return std::make_unique<Ldpv2>(c, std::move(l0), std::move(l2), std::move(w), std::move(b));
}

}  // namespace ocellus::connect
