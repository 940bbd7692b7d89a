#include "ocellus/ops/grid.h"

#include <cmath>
#include <vector>

#include "ocellus/core/threads.h"
#include "ops/util.h"

namespace ocellus::ops {
namespace {

// x [g·g, d] f32: its grid side (even when asked).
int64_t check_grid(const Tensor& x, const char* op, bool even) {
  detail::require_f32(x, op, "x");
  OCELLUS_CHECK(x.ndim() == 2, op, ": x must be [g*g, d] rows of a square grid, got ", x.shape().str());
  return grid_side(x.dim(0), op, even);
}

// The kernel as [d, 9] f32 (its taps row-major), from any shape of d rows of 9 taps.
Tensor check_kernel(const Tensor& w, int64_t d, const char* op) {
  OCELLUS_CHECK(w.defined() && w.ndim() >= 2 && w.dim(0) == d && w.numel() == 9 * d, op, ": kernel ",
                w.defined() ? w.shape().str() : std::string("(none)"), " is not ", d, " channels of 3x3 taps");
  return w.to(DType::F32).reshape({d, 9});
}

void check_bias(const Tensor* b, int64_t d, const char* op) {
  if (!b) return;
  detail::require_f32(*b, op, "bias");
  OCELLUS_CHECK(b->shape() == Shape({d}), op, ": bias ", b->shape().str(), " is not [", d, "]");
}

}  // namespace

int64_t grid_side(int64_t n, const char* op, bool even) {
  const auto g = int64_t(std::llround(std::sqrt(double(n))));
  OCELLUS_CHECK(n > 0 && g * g == n && (!even || g % 2 == 0), op, ": ", n, " rows are not ",
                even ? "an even square grid" : "a square grid");
  return g;
}

Tensor avg_pool2(const Tensor& x_in) {
  const int64_t g = check_grid(x_in, "avg_pool2", true), h = g / 2, d = x_in.dim(1);
  const Tensor x = x_in.contiguous();
  const float* xp = x.data<float>();
  Tensor out = Tensor::empty({h * h, d});
  float* op = out.data<float>();
  parallel_for(h * h, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* a = xp + ((2 * (r / h)) * g + 2 * (r % h)) * d;  // the block's top-left patch
      const float *b = a + d, *c = a + g * d, *e = c + d;
      float* o = op + r * d;
      for (int64_t k = 0; k < d; ++k) o[k] = (a[k] + b[k] + c[k] + e[k]) * 0.25f;
    }
  });
  return out;
}

void avg_pool2_backward(const Tensor& dy_in, Tensor* dx) {
  if (!dx) return;
  const int64_t g = check_grid(*dx, "avg_pool2_backward", true), h = g / 2, d = dx->dim(1);
  detail::check_grad(dx, dx->shape(), "avg_pool2_backward", "dx");
  OCELLUS_CHECK(dy_in.shape() == Shape({h * h, d}), "avg_pool2_backward: dy ", dy_in.shape().str(), " is not [", h * h, ", ", d, "]");
  const Tensor dy = dy_in.contiguous();
  const float* gp = dy.data<float>();
  float* xp = dx->data<float>();
  parallel_for(h * h, 16, [&](int64_t r0, int64_t r1) {  // blocks do not overlap: no races
    for (int64_t r = r0; r < r1; ++r) {
      float* a = xp + ((2 * (r / h)) * g + 2 * (r % h)) * d;
      float *b = a + d, *c = a + g * d, *e = c + d;
      const float* s = gp + r * d;
      for (int64_t k = 0; k < d; ++k) {
        const float q = s[k] * 0.25f;
        a[k] += q, b[k] += q, c[k] += q, e[k] += q;
      }
    }
  });
}

Tensor depthwise3x3(const Tensor& x_in, const Tensor& w_in, const Tensor* b) {
  const int64_t g = check_grid(x_in, "depthwise3x3", false), d = x_in.dim(1);
  const Tensor w = check_kernel(w_in, d, "depthwise3x3");
  check_bias(b, d, "depthwise3x3");
  const Tensor x = x_in.contiguous(), bias = b ? b->contiguous() : Tensor();
  const float *xp = x.data<float>(), *wp = w.data<float>();
  const float* bp = b ? bias.data<float>() : nullptr;
  Tensor out = Tensor::empty({g * g, d});
  float* op = out.data<float>();
  parallel_for(g * g, 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t y = r / g, xx = r % g;
      float* o = op + r * d;
      for (int64_t k = 0; k < d; ++k) o[k] = bp ? bp[k] : 0.0f;
      for (int64_t dy = -1; dy <= 1; ++dy)
        for (int64_t dx = -1; dx <= 1; ++dx) {
          const int64_t sy = y + dy, sx = xx + dx;
          if (sy < 0 || sy >= g || sx < 0 || sx >= g) continue;
          const float* in = xp + (sy * g + sx) * d;
          const int64_t tap = (dy + 1) * 3 + (dx + 1);
          for (int64_t k = 0; k < d; ++k) o[k] += wp[k * 9 + tap] * in[k];
        }
    }
  });
  return out;
}

void depthwise3x3_backward(const Tensor& x_in, const Tensor& w_in, const Tensor& dy_in, Tensor* dx, Tensor* dw,
                           Tensor* db) {
  const int64_t g = check_grid(x_in, "depthwise3x3_backward", false), d = x_in.dim(1), n = g * g;
  const Tensor w = check_kernel(w_in, d, "depthwise3x3_backward");
  OCELLUS_CHECK(dy_in.shape() == x_in.shape(), "depthwise3x3_backward: dy ", dy_in.shape().str(), " is not ", x_in.shape().str());
  detail::check_grad(dx, x_in.shape(), "depthwise3x3_backward", "dx");
  detail::check_grad(dw, w_in.shape(), "depthwise3x3_backward", "dw");
  detail::check_grad(db, Shape({d}), "depthwise3x3_backward", "db");
  const Tensor x = x_in.contiguous(), dy = dy_in.contiguous();
  const float *xp = x.data<float>(), *wp = w.data<float>(), *gp = dy.data<float>();
  if (dx) {  // input s is read by output s - offset through tap offset: gather per input row
    float* dxp = dx->data<float>();
    parallel_for(n, 4, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t y = s / g, xx = s % g;
        float* o = dxp + s * d;
        for (int64_t oy = -1; oy <= 1; ++oy)
          for (int64_t ox = -1; ox <= 1; ++ox) {
            const int64_t ry = y - oy, rx = xx - ox;  // the output that reads s at offset (oy, ox)
            if (ry < 0 || ry >= g || rx < 0 || rx >= g) continue;
            const float* gr = gp + (ry * g + rx) * d;
            const int64_t tap = (oy + 1) * 3 + (ox + 1);
            for (int64_t k = 0; k < d; ++k) o[k] += wp[k * 9 + tap] * gr[k];
          }
      }
    });
  }
  if (dw || db) {  // sums over the grid, channels in parallel
    float* dwp = dw ? dw->data<float>() : nullptr;
    float* dbp = db ? db->data<float>() : nullptr;
    parallel_for(d, 16, [&](int64_t c0, int64_t c1) {
      const int64_t m = c1 - c0;
      std::vector<double> tw(size_t(m) * 9, 0.0), tb(size_t(m), 0.0);
      for (int64_t r = 0; r < n; ++r) {
        const int64_t y = r / g, xx = r % g;
        const float* gr = gp + r * d + c0;
        for (int64_t k = 0; k < m; ++k) tb[size_t(k)] += gr[k];
        if (!dwp) continue;
        for (int64_t oy = -1; oy <= 1; ++oy)
          for (int64_t ox = -1; ox <= 1; ++ox) {
            const int64_t sy = y + oy, sx = xx + ox;
            if (sy < 0 || sy >= g || sx < 0 || sx >= g) continue;
            const float* in = xp + (sy * g + sx) * d + c0;
            const int64_t tap = (oy + 1) * 3 + (ox + 1);
            for (int64_t k = 0; k < m; ++k) tw[size_t(k * 9 + tap)] += double(gr[k]) * in[k];
          }
      }
      for (int64_t k = 0; k < m; ++k) {
        if (dbp) dbp[c0 + k] += float(tb[size_t(k)]);
        if (dwp)
          for (int t = 0; t < 9; ++t) dwp[(c0 + k) * 9 + t] += float(tw[size_t(k * 9 + t)]);
      }
    });
  }
}

namespace ref {

Tensor avg_pool2(const Tensor& x) {
  const int64_t g = check_grid(x, "ref::avg_pool2", true), h = g / 2, d = x.dim(1);
  Tensor out = Tensor::empty({h * h, d});
  for (int64_t y = 0; y < h; ++y)
    for (int64_t xx = 0; xx < h; ++xx)
      for (int64_t c = 0; c < d; ++c) {
        double s = 0;
        for (int64_t a = 0; a < 2; ++a)
          for (int64_t b = 0; b < 2; ++b) s += x.at({(2 * y + a) * g + 2 * xx + b, c});
        out.at({y * h + xx, c}) = float(s / 4);
      }
  return out;
}

void avg_pool2_backward(const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  const int64_t g = check_grid(*dx, "ref::avg_pool2_backward", true), h = g / 2;
  for (int64_t i = 0; i < g * g; ++i)
    for (int64_t c = 0; c < dx->dim(1); ++c) dx->at({i, c}) += dy.at({(i / g / 2) * h + (i % g) / 2, c}) / 4;
}

Tensor depthwise3x3(const Tensor& x, const Tensor& w_in, const Tensor* b) {
  const int64_t g = check_grid(x, "ref::depthwise3x3", false), d = x.dim(1);
  const Tensor w = check_kernel(w_in, d, "ref::depthwise3x3");
  Tensor out = Tensor::empty({g * g, d});
  for (int64_t y = 0; y < g; ++y)
    for (int64_t xx = 0; xx < g; ++xx)
      for (int64_t c = 0; c < d; ++c) {
        double s = b ? b->at({c}) : 0.0;
        for (int64_t ky = 0; ky < 3; ++ky)
          for (int64_t kx = 0; kx < 3; ++kx) {
            const int64_t sy = y + ky - 1, sx = xx + kx - 1;
            if (sy >= 0 && sy < g && sx >= 0 && sx < g) s += double(w.at({c, ky * 3 + kx})) * x.at({sy * g + sx, c});
          }
        out.at({y * g + xx, c}) = float(s);
      }
  return out;
}

void depthwise3x3_backward(const Tensor& x, const Tensor& w_in, const Tensor& dy, Tensor* dx, Tensor* dw, Tensor* db) {
  const int64_t g = check_grid(x, "ref::depthwise3x3_backward", false), d = x.dim(1);
  const Tensor w = check_kernel(w_in, d, "ref::depthwise3x3_backward");
  Tensor dw2 = dw ? dw->reshape({d, 9}) : Tensor();  // shares dw's storage
  for (int64_t y = 0; y < g; ++y)
    for (int64_t xx = 0; xx < g; ++xx)
      for (int64_t c = 0; c < d; ++c) {
        const float go = dy.at({y * g + xx, c});
        if (db) db->at({c}) += go;
        for (int64_t ky = 0; ky < 3; ++ky)
          for (int64_t kx = 0; kx < 3; ++kx) {
            const int64_t sy = y + ky - 1, sx = xx + kx - 1;
            if (sy < 0 || sy >= g || sx < 0 || sx >= g) continue;
            if (dx) dx->at({sy * g + sx, c}) += go * w.at({c, ky * 3 + kx});
            if (dw) dw2.at({c, ky * 3 + kx}) += go * x.at({sy * g + sx, c});
          }
      }
}

}  // namespace ref

}  // namespace ocellus::ops
