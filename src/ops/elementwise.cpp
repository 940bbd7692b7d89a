#include "ocellus/ops/elementwise.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "ocellus/core/dtype.h"
#include "ocellus/core/error.h"
#include "ocellus/core/threads.h"
#include "ops/kernels/kernels.h"
#include "ops/util.h"

namespace ocellus::ops {
namespace {

using detail::elem;
using detail::for_each_index;
using detail::require_f32;

// A tensor seen as 4-D for an output of shape `out`: dims aligned right, broadcast dims stride 0.
struct View4 {
  uint8_t* p;
  int64_t st[4];
};
View4 view4(const Tensor& t, const Shape& out) {
  View4 v{t.raw(), {0, 0, 0, 0}};
  const int off = 4 - out.ndim, toff = out.ndim - t.ndim();
  for (int d = 0; d < out.ndim; ++d) {
    const int td = d - toff;
    v.st[off + d] = (td >= 0 && t.dim(td) != 1) ? t.stride(td) : 0;
  }
  return v;
}
void dims4(const Shape& s, int64_t n[4]) {
  for (int d = 0; d < 4; ++d) n[d] = 1;
  for (int d = 0; d < s.ndim; ++d) n[4 - s.ndim + d] = s[d];
}

// out = f(a, b) with broadcasting; rows of the last dimension processed in parallel.
template <typename F>
Tensor binary_fast(const Tensor& a, const Tensor& b, F f) {
  const Shape s = broadcast_shapes(a.shape(), b.shape());
  Tensor out = Tensor::empty(s);
  float* o = out.data<float>();
  if (a.shape() == s && b.shape() == s && a.is_contiguous() && b.is_contiguous()) {
    const float* ap = a.data<float>();
    const float* bp = b.data<float>();
    parallel_for(s.numel(), 1 << 14, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) o[i] = f(ap[i], bp[i]);
    });
    return out;
  }
  int64_t n[4];
  dims4(s, n);
  const View4 va = view4(a, s), vb = view4(b, s);
  const int64_t rows = n[0] * n[1] * n[2], len = n[3];
  parallel_for(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(len, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t i0 = r / (n[1] * n[2]), i1 = (r / n[2]) % n[1], i2 = r % n[2];
      const uint8_t* pa = va.p + i0 * va.st[0] + i1 * va.st[1] + i2 * va.st[2];
      const uint8_t* pb = vb.p + i0 * vb.st[0] + i1 * vb.st[1] + i2 * vb.st[2];
      float* po = o + r * len;
      if (va.st[3] == 4 && vb.st[3] == 4) {
        const float* x = reinterpret_cast<const float*>(pa);
        const float* y = reinterpret_cast<const float*>(pb);
        for (int64_t j = 0; j < len; ++j) po[j] = f(x[j], y[j]);
      } else if (va.st[3] == 4 && vb.st[3] == 0) {
        const float* x = reinterpret_cast<const float*>(pa);
        const float y = *reinterpret_cast<const float*>(pb);
        for (int64_t j = 0; j < len; ++j) po[j] = f(x[j], y);
      } else {
        for (int64_t j = 0; j < len; ++j)
          po[j] = f(*reinterpret_cast<const float*>(pa + j * va.st[3]),
                    *reinterpret_cast<const float*>(pb + j * vb.st[3]));
      }
    }
  });
  return out;
}

// g += Σ over broadcast dims of h(i) where h gives the per-output-element value (fast path:
// pointer arithmetic, rows of g in parallel when shapes match, else one pass).
template <typename H>
void reduce_into(Tensor* g, const Shape& s, H h) {
  if (!g) return;
  int64_t n[4];
  dims4(s, n);
  const View4 vg = view4(*g, s);
  const int64_t total = s.numel();
  if (g->shape() == s) {
    float* gp = g->data<float>();
    parallel_for(total, 1 << 14, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) gp[i] += h(i);
    });
    return;
  }
  for (int64_t i = 0; i < total; ++i) {
    const int64_t c3 = i % n[3], c2 = (i / n[3]) % n[2], c1 = (i / (n[3] * n[2])) % n[1],
                  c0 = i / (n[3] * n[2] * n[1]);
    *reinterpret_cast<float*>(vg.p + c0 * vg.st[0] + c1 * vg.st[1] + c2 * vg.st[2] + c3 * vg.st[3]) += h(i);
  }
}

void check_binary_grads(const Tensor& dy, const Tensor* da, const Tensor* db, const char* op) {
  require_f32(dy, op, "dy");
  for (const Tensor* g : {da, db}) {
    if (!g) continue;
    require_f32(*g, op, "grad");
    OCELLUS_CHECK(g->is_contiguous() && g->writable(), op, ": grads must be contiguous and writable");
    OCELLUS_CHECK(broadcast_shapes(g->shape(), dy.shape()) == dy.shape(), op, ": grad shape ",
                  g->shape().str(), " does not broadcast to ", dy.shape().str());
  }
}

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluC = 0.044715f;

inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// f(x) and f'(x) of each activation, in double for the references.
double act_ref(Activation f, double x) {
  switch (f) {
    case Activation::GeluErf: return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case Activation::GeluTanh: return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    case Activation::QuickGelu: return x * sigmoid(1.702 * x);
    case Activation::Silu: return x * sigmoid(x);
  }
  return 0;
}
double act_grad_ref(Activation f, double x) {
  switch (f) {
    case Activation::GeluErf:
      return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
    case Activation::GeluTanh: {
      const double u = 0.7978845608028654 * (x + 0.044715 * x * x * x), t = std::tanh(u);
      return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 3 * 0.044715 * x * x);
    }
    case Activation::QuickGelu: {
      const double s = sigmoid(1.702 * x);
      return s + 1.702 * x * s * (1.0 - s);
    }
    case Activation::Silu: {
      const double s = sigmoid(x);
      return s + x * s * (1.0 - s);
    }
  }
  return 0;
}

// Single-precision forms for the fast kernels (vectorizable, no double).
template <Activation F>
inline float act_f(float x) {
  if constexpr (F == Activation::GeluErf) return 0.5f * x * (1.0f + std::erf(x * 0.70710678f));
  if constexpr (F == Activation::GeluTanh) return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + kGeluC * x * x * x)));
  if constexpr (F == Activation::QuickGelu) return x / (1.0f + std::exp(-1.702f * x));
  if constexpr (F == Activation::Silu) return x / (1.0f + std::exp(-x));
}
template <Activation F>
inline float act_grad_f(float x) {
  if constexpr (F == Activation::GeluErf)
    return 0.5f * (1.0f + std::erf(x * 0.70710678f)) + x * std::exp(-0.5f * x * x) * 0.39894228f;
  if constexpr (F == Activation::GeluTanh) {
    const float t = std::tanh(kSqrt2OverPi * (x + kGeluC * x * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kGeluC * x * x);
  }
  if constexpr (F == Activation::QuickGelu) {
    const float s = 1.0f / (1.0f + std::exp(-1.702f * x));
    return s + 1.702f * x * s * (1.0f - s);
  }
  if constexpr (F == Activation::Silu) {
    const float s = 1.0f / (1.0f + std::exp(-x));
    return s + x * s * (1.0f - s);
  }
}

// body(std::integral_constant<Activation, f>): a loop compiled for each activation, run for f.
template <typename Body>
void with_activation(Activation f, Body body) {
  switch (f) {
    case Activation::GeluErf: return body(std::integral_constant<Activation, Activation::GeluErf>());
    case Activation::GeluTanh: return body(std::integral_constant<Activation, Activation::GeluTanh>());
    case Activation::QuickGelu: return body(std::integral_constant<Activation, Activation::QuickGelu>());
    case Activation::Silu: return body(std::integral_constant<Activation, Activation::Silu>());
  }
}

// The f of a packed gate / up input [n, 2f] (each row: f gate values, then f up values).
int64_t packed_width(const Tensor& gate_up, const char* op) {
  OCELLUS_CHECK(gate_up.ndim() == 2 && gate_up.dim(1) % 2 == 0, op, ": input must be [n, 2f], got ", gate_up.shape().str());
  return gate_up.dim(1) / 2;
}

void check_same(const Tensor& a, const Tensor& b, const char* op) {
  require_f32(a, op, "input");
  require_f32(b, op, "input");
  OCELLUS_CHECK(a.shape() == b.shape(), op, ": shapes ", a.shape().str(), " and ",
                b.shape().str(), " differ");
}

}  // namespace

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  Shape s;
  s.ndim = std::max(a.ndim, b.ndim);
  for (int i = 0; i < s.ndim; ++i) {
    const int ia = a.ndim - s.ndim + i, ib = b.ndim - s.ndim + i;
    const int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    OCELLUS_CHECK(da == db || da == 1 || db == 1, "broadcast: shapes ", a.str(), " and ", b.str(),
                  " are incompatible");
    s[i] = da == 1 ? db : da;
  }
  return s;
}

const char* activation_name(Activation f) {
  switch (f) {
    case Activation::GeluErf: return "gelu";
    case Activation::GeluTanh: return "gelu_tanh";
    case Activation::QuickGelu: return "quick_gelu";
    case Activation::Silu: return "silu";
  }
  return "?";
}

Activation parse_activation(const std::string& n) {
  if (n == "gelu") return Activation::GeluErf;
  if (n == "gelu_pytorch_tanh" || n == "gelu_new" || n == "gelu_fast" || n == "gelu_tanh") return Activation::GeluTanh;
  if (n == "quick_gelu") return Activation::QuickGelu;
  if (n == "silu" || n == "swish") return Activation::Silu;
  fail("activation '", n, "' is not supported (gelu, gelu_pytorch_tanh, gelu_new, quick_gelu, silu)");
}

Tensor add(const Tensor& a, const Tensor& b) {
  require_f32(a, "add", "a");
  require_f32(b, "add", "b");
  return binary_fast(a, b, [](float x, float y) { return x + y; });
}
Tensor mul(const Tensor& a, const Tensor& b) {
  require_f32(a, "mul", "a");
  require_f32(b, "mul", "b");
  return binary_fast(a, b, [](float x, float y) { return x * y; });
}
Tensor scale(const Tensor& a, float s) {
  require_f32(a, "scale", "a");
  const Tensor c = a.contiguous();
  Tensor out = Tensor::empty(a.shape());
  const float* x = c.data<float>();
  float* y = out.data<float>();
  parallel_for(a.numel(), 1 << 14, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = x[i] * s;
  });
  return out;
}

void add_backward(const Tensor& dy_in, Tensor* da, Tensor* db) {
  check_binary_grads(dy_in, da, db, "add_backward");
  const Tensor dy = dy_in.contiguous();
  const float* g = dy.data<float>();
  reduce_into(da, dy.shape(), [&](int64_t i) { return g[i]; });
  reduce_into(db, dy.shape(), [&](int64_t i) { return g[i]; });
}

void mul_backward(const Tensor& a, const Tensor& b, const Tensor& dy_in, Tensor* da, Tensor* db) {
  check_binary_grads(dy_in, da, db, "mul_backward");
  const Tensor dy = dy_in.contiguous();
  const Shape s = dy.shape();
  const float* g = dy.data<float>();
  const Tensor ones = Tensor::full(s, 1.0f);
  // d += dy · the other operand (expanded to the output's shape), summed over d's broadcast dims
  auto part = [&](Tensor* d, const Tensor& other) {
    if (!d) return;
    const Tensor o = mul(other, ones);
    const float* op = o.data<float>();
    reduce_into(d, s, [&](int64_t i) { return g[i] * op[i]; });
  };
  part(da, b);
  part(db, a);
}

void scale_backward(const Tensor& dy_in, float s, Tensor* da) {
  if (!da) return;
  detail::check_grad(da, dy_in.shape(), "scale_backward", "da");
  const Tensor dy = dy_in.contiguous();
  const float* g = dy.data<float>();
  reduce_into(da, dy.shape(), [&](int64_t i) { return g[i] * s; });
}

Tensor activate(Activation f, const Tensor& x_in) {
  require_f32(x_in, "activate", "x");
  const Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape());
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  with_activation(f, [&](auto F) {
    parallel_for(x.numel(), 1 << 12, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) yp[i] = act_f<decltype(F)::value>(xp[i]);
    });
  });
  return y;
}

void activate_backward(Activation f, const Tensor& x_in, const Tensor& dy_in, Tensor* dx) {
  if (!dx) return;
  detail::check_grad(dx, x_in.shape(), "activate_backward", "dx");
  check_same(x_in, dy_in, "activate_backward");
  const Tensor x = x_in.contiguous(), dy = dy_in.contiguous();
  const float *xp = x.data<float>(), *g = dy.data<float>();
  float* d = dx->data<float>();
  with_activation(f, [&](auto F) {
    parallel_for(x.numel(), 1 << 12, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) d[i] += g[i] * act_grad_f<decltype(F)::value>(xp[i]);
    });
  });
}

namespace {
// One piece of the SwiGLU forward: y = silu(g)·u = g / (1 + e^-g) · u, with e^-g from the
// kernel table written into y first.
void swiglu_piece(const kern::Table& K, const float* g, const float* u, float* y, int64_t n) {
  K.exp_affine(g, -1.0f, 0.0f, y, n);  // e^-g
  for (int64_t i = 0; i < n; ++i) y[i] = g[i] / (1.0f + y[i]) * u[i];
}
}  // namespace

Tensor swiglu(const Tensor& gate, const Tensor& up) {
  check_same(gate, up, "swiglu");
  const Tensor g = gate.contiguous(), u = up.contiguous();
  Tensor y = Tensor::empty(gate.shape());
  const float *gp = g.data<float>(), *up_ = u.data<float>();
  float* yp = y.data<float>();
  const kern::Table& K = kern::active();
  parallel_for(y.numel(), 1 << 12, [&](int64_t i0, int64_t i1) { swiglu_piece(K, gp + i0, up_ + i0, yp + i0, i1 - i0); });
  return y;
}

namespace {
// One piece of the SwiGLU backward, with the sigmoid's e^-g given: dgate += / = dy·up·s(1 + g(1 − s)),
// dup += / = dy·g·s. One loop per case, no aliasing, so each vectorizes.
template <bool kGate, bool kUp, bool kOverwrite>
void swiglu_grad_piece(const float* __restrict g, const float* __restrict u, const float* __restrict d,
                       const float* __restrict e, float* __restrict dg, float* __restrict du, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float s = 1.0f / (1.0f + e[i]);  // sigmoid(g)
    if constexpr (kGate) {
      const float v = d[i] * u[i] * (s * (1.0f + g[i] * (1.0f - s)));
      dg[i] = kOverwrite ? v : dg[i] + v;
    }
    if constexpr (kUp) {
      const float v = d[i] * g[i] * s;
      du[i] = kOverwrite ? v : du[i] + v;
    }
  }
}
}  // namespace

void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dy_in, Tensor* dgate,
                     Tensor* dup, bool overwrite) {
  check_same(gate, up, "swiglu_backward");
  check_same(gate, dy_in, "swiglu_backward");
  detail::check_grad(dgate, gate.shape(), "swiglu_backward", "dgate");
  detail::check_grad(dup, up.shape(), "swiglu_backward", "dup");
  if (!dgate && !dup) return;
  OCELLUS_CHECK(!dgate || !dup || dgate->raw() != dup->raw(), "swiglu_backward: dgate and dup must not be the same tensor");
  const Tensor g = gate.contiguous(), u = up.contiguous(), dy = dy_in.contiguous();
  const float *gp = g.data<float>(), *upp = u.data<float>(), *d = dy.data<float>();
  float* dg = dgate ? dgate->data<float>() : nullptr;
  float* du = dup ? dup->data<float>() : nullptr;
  const kern::Table& K = kern::active();
  auto piece = [&](int64_t i0, int64_t n, const float* e) {
    if (dg && du) {
      if (overwrite) swiglu_grad_piece<true, true, true>(gp + i0, upp + i0, d + i0, e, dg + i0, du + i0, n);
      else swiglu_grad_piece<true, true, false>(gp + i0, upp + i0, d + i0, e, dg + i0, du + i0, n);
    } else if (dg) {
      if (overwrite) swiglu_grad_piece<true, false, true>(gp + i0, upp + i0, d + i0, e, dg + i0, nullptr, n);
      else swiglu_grad_piece<true, false, false>(gp + i0, upp + i0, d + i0, e, dg + i0, nullptr, n);
    } else {
      if (overwrite) swiglu_grad_piece<false, true, true>(gp + i0, upp + i0, d + i0, e, nullptr, du + i0, n);
      else swiglu_grad_piece<false, true, false>(gp + i0, upp + i0, d + i0, e, nullptr, du + i0, n);
    }
  };
  parallel_for(g.numel(), 1 << 12, [&](int64_t a, int64_t b) {
    float e[1024];  // on the stack, in pieces: no allocation and no zeroing per call
    for (int64_t i0 = a; i0 < b; i0 += 1024) {
      const int64_t n = std::min(b, i0 + 1024) - i0;
      K.exp_affine(gp + i0, -1.0f, 0.0f, e, n);  // e^-g
      piece(i0, n, e);
    }
  });
}

Tensor swiglu_packed(const Tensor& gate_up_in) {
  detail::require_f32(gate_up_in, "swiglu_packed", "gate_up");
  const int64_t f = packed_width(gate_up_in, "swiglu_packed"), n = gate_up_in.dim(0);
  const Tensor gu = gate_up_in.contiguous();
  Tensor y = Tensor::empty({n, f});
  const float* src = gu.data<float>();
  float* yp = y.data<float>();
  const kern::Table& K = kern::active();
  parallel_for(n, std::max<int64_t>(1, 4096 / std::max<int64_t>(f, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) swiglu_piece(K, src + r * 2 * f, src + r * 2 * f + f, yp + r * f, f);
  });
  return y;
}

void swiglu_packed_backward(const Tensor& gate_up_in, const Tensor& dy_in, Tensor* dgate_up) {
  detail::require_f32(gate_up_in, "swiglu_packed_backward", "gate_up");
  const int64_t f = packed_width(gate_up_in, "swiglu_packed_backward"), n = gate_up_in.dim(0);
  OCELLUS_CHECK(dy_in.shape() == Shape({n, f}), "swiglu_packed_backward: dy has shape ", dy_in.shape().str(), ", expected [",
                n, ", ", f, "]");
  detail::check_grad(dgate_up, gate_up_in.shape(), "swiglu_packed_backward", "dgate_up");
  if (!dgate_up) return;
  const Tensor gu = gate_up_in.contiguous(), dy = dy_in.contiguous();
  const float *src = gu.data<float>(), *d = dy.data<float>();
  float* dst = dgate_up->data<float>();
  const kern::Table& K = kern::active();
  parallel_for(n, std::max<int64_t>(1, 4096 / std::max<int64_t>(f, 1)), [&](int64_t r0, int64_t r1) {
    float e[1024];
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t i0 = 0; i0 < f; i0 += 1024) {
        const int64_t m = std::min<int64_t>(1024, f - i0);
        const float* g = src + r * 2 * f + i0;
        K.exp_affine(g, -1.0f, 0.0f, e, m);  // e^-g
        swiglu_grad_piece<true, true, true>(g, g + f, d + r * f + i0, e, dst + r * 2 * f + i0, dst + r * 2 * f + f + i0, m);
      }
  });
}

// ---- naive references: index by index, double arithmetic ---------------------------------
// fn at every f16 value, rounded to f16: index = the input's f16 bits.
template <typename Fn>
std::vector<uint16_t> f16_table(Fn fn) {
  std::vector<uint16_t> t(65536);
  for (uint32_t h = 0; h < 65536; ++h) t[h] = f32_to_fp16(fn(fp16_to_f32(uint16_t(h))));
  return t;
}

Tensor activate_ggml_f16(Activation f, const Tensor& x_in) {
  OCELLUS_CHECK(f == Activation::GeluTanh || f == Activation::QuickGelu, "activate_ggml_f16: no llama.cpp table for ",
                activation_name(f));
  // One table per function over all 65536 f16 inputs, built on first use.
  static const std::vector<uint16_t> gelu = f16_table([](float x) {
    return 0.5f * x * (1.0f + std::tanh(0.79788456080286535587989211986876f * x * (1.0f + 0.044715f * x * x)));
  });
  static const std::vector<uint16_t> quick = f16_table([](float x) { return x * (1.0f / (1.0f + std::exp(-1.702f * x))); });
  Tensor y = x_in.contiguous().clone();
  float* p = y.data<float>();
  const int64_t n = y.numel();
  if (f == Activation::GeluTanh) {
    parallel_for(n, 4096, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) {
        const float x = p[i];
        p[i] = x <= -10.0f ? 0.0f : x >= 10.0f ? x : fp16_to_f32(gelu[f32_to_fp16(x)]);
      }
    });
  } else {
    parallel_for(n, 4096, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) p[i] = fp16_to_f32(quick[f32_to_fp16(p[i])]);
    });
  }
  return y;
}

namespace ref {
namespace {

// Index of a (possibly broadcast) operand for an output index.
const float& bcast(const Tensor& t, const Shape& out, const int64_t* idx) {
  int64_t ti[kMaxDims];
  for (int d = 0; d < t.ndim(); ++d) {
    const int od = out.ndim - t.ndim() + d;
    ti[d] = t.dim(d) == 1 ? 0 : idx[od];
  }
  return elem(t, ti);
}

template <typename F>
Tensor binary(const Tensor& a, const Tensor& b, F f) {
  const Shape s = broadcast_shapes(a.shape(), b.shape());
  Tensor out = Tensor::empty(s);
  for_each_index(s, [&](const int64_t* i) {
    elem(out, i) = float(f(double(bcast(a, s, i)), double(bcast(b, s, i))));
  });
  return out;
}

template <typename H>
void reduce(Tensor* g, const Tensor& dy, H h) {
  if (!g) return;
  for_each_index(dy.shape(), [&](const int64_t* i) {
    const_cast<float&>(bcast(*g, dy.shape(), i)) += float(h(i));
  });
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(a, b, [](double x, double y) { return x + y; }); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(a, b, [](double x, double y) { return x * y; }); }
Tensor scale(const Tensor& a, float s) {
  Tensor out = Tensor::empty(a.shape());
  for_each_index(a.shape(), [&](const int64_t* i) { elem(out, i) = elem(a, i) * s; });
  return out;
}
void add_backward(const Tensor& dy, Tensor* da, Tensor* db) {
  reduce(da, dy, [&](const int64_t* i) { return elem(dy, i); });
  reduce(db, dy, [&](const int64_t* i) { return elem(dy, i); });
}
void mul_backward(const Tensor& a, const Tensor& b, const Tensor& dy, Tensor* da, Tensor* db) {
  const Shape& s = dy.shape();
  reduce(da, dy, [&](const int64_t* i) { return double(elem(dy, i)) * bcast(b, s, i); });
  reduce(db, dy, [&](const int64_t* i) { return double(elem(dy, i)) * bcast(a, s, i); });
}
void scale_backward(const Tensor& dy, float s, Tensor* da) {
  reduce(da, dy, [&](const int64_t* i) { return double(elem(dy, i)) * s; });
}
Tensor activate(Activation f, const Tensor& x) {
  Tensor y = Tensor::empty(x.shape());
  for_each_index(x.shape(), [&](const int64_t* i) { elem(y, i) = float(act_ref(f, elem(x, i))); });
  return y;
}
void activate_backward(Activation f, const Tensor& x, const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  for_each_index(x.shape(), [&](const int64_t* i) {
    elem(*dx, i) += float(double(elem(dy, i)) * act_grad_ref(f, elem(x, i)));
  });
}
Tensor swiglu(const Tensor& gate, const Tensor& up) {
  Tensor y = Tensor::empty(gate.shape());
  for_each_index(gate.shape(), [&](const int64_t* i) {
    elem(y, i) = float(act_ref(Activation::Silu, elem(gate, i)) * elem(up, i));
  });
  return y;
}
void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dy, Tensor* dgate,
                     Tensor* dup) {
  for_each_index(gate.shape(), [&](const int64_t* i) {
    const double g = elem(gate, i), d = elem(dy, i);
    if (dgate) elem(*dgate, i) += float(d * elem(up, i) * act_grad_ref(Activation::Silu, g));
    if (dup) elem(*dup, i) += float(d * act_ref(Activation::Silu, g));
  });
}

Tensor activate_ggml_f16(Activation f, const Tensor& x) {
  OCELLUS_CHECK(f == Activation::GeluTanh || f == Activation::QuickGelu, "ref::activate_ggml_f16: no llama.cpp table for ",
                activation_name(f));
  // llama.cpp's scalar formulas (ggml_gelu_f32, ggml_gelu_quick_f32), in f32.
  auto fn = [f](float v) {
    if (f == Activation::GeluTanh) return 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * v * (1.0f + kGeluC * v * v)));
    return v * (1.0f / (1.0f + std::exp(-1.702f * v)));
  };
  Tensor y = Tensor::empty(x.shape());
  for_each_index(x.shape(), [&](const int64_t* i) {
    const float v = elem(x, i);
    if (f == Activation::GeluTanh && v <= -10.0f) elem(y, i) = 0.0f;
    else if (f == Activation::GeluTanh && v >= 10.0f) elem(y, i) = v;
    else elem(y, i) = fp16_to_f32(f32_to_fp16(fn(fp16_to_f32(f32_to_fp16(v)))));
  });
  return y;
}

Tensor swiglu_packed(const Tensor& gate_up) {
  const int64_t f = packed_width(gate_up, "ref::swiglu_packed"), n = gate_up.dim(0);
  Tensor y = Tensor::empty({n, f});
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < f; ++i)
      y.at({r, i}) = float(act_ref(Activation::Silu, gate_up.at({r, i})) * double(gate_up.at({r, f + i})));
  return y;
}

void swiglu_packed_backward(const Tensor& gate_up, const Tensor& dy, Tensor* dgate_up) {
  const int64_t f = packed_width(gate_up, "ref::swiglu_packed_backward"), n = gate_up.dim(0);
  if (!dgate_up) return;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < f; ++i) {
      const double g = gate_up.at({r, i}), u = gate_up.at({r, f + i}), d = dy.at({r, i});
      dgate_up->at({r, i}) = float(d * u * act_grad_ref(Activation::Silu, g));
      dgate_up->at({r, f + i}) = float(d * act_ref(Activation::Silu, g));
    }
}

}  // namespace ref
}  // namespace ocellus::ops
