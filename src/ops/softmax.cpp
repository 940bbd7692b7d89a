#include "ocellus/ops/softmax.h"

#include <cmath>
#include <limits>

#include "ocellus/core/threads.h"
#include "ops/util.h"

namespace ocellus::ops {

Tensor softmax(const Tensor& x_in) {
  detail::require_f32(x_in, "softmax", "x");
  const Tensor x = x_in.contiguous();
  const int64_t rows = x.shape().rows(), d = x.dim(-1);
  Tensor y = Tensor::empty(x.shape());
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  parallel_for(rows, 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = xp + r * d;
      float* yr = yp + r * d;
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < d; ++j) m = std::max(m, xr[j]);
      if (m == -std::numeric_limits<float>::infinity()) {  // everything masked: all zero
        for (int64_t j = 0; j < d; ++j) yr[j] = 0.0f;
        continue;
      }
      float s = 0;
      for (int64_t j = 0; j < d; ++j) s += (yr[j] = std::exp(xr[j] - m));
      const float inv = 1.0f / s;
      for (int64_t j = 0; j < d; ++j) yr[j] *= inv;
    }
  });
  return y;
}

void softmax_backward(const Tensor& y_in, const Tensor& dy_in, Tensor* dx) {
  if (!dx) return;
  detail::require_f32(y_in, "softmax_backward", "y");
  detail::check_grad(dx, y_in.shape(), "softmax_backward", "dx");
  const Tensor y = y_in.contiguous(), dy = dy_in.contiguous();
  const int64_t rows = y.shape().rows(), d = y.dim(-1);
  const float *yp = y.data<float>(), *g = dy.data<float>();
  float* o = dx->data<float>();
  parallel_for(rows, 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float s = 0;
      for (int64_t j = 0; j < d; ++j) s += g[r * d + j] * yp[r * d + j];
      for (int64_t j = 0; j < d; ++j) o[r * d + j] += yp[r * d + j] * (g[r * d + j] - s);
    }
  });
}

namespace ref {

Tensor softmax(const Tensor& x) {
  const int64_t d = x.dim(-1);
  Tensor y = Tensor::empty(x.shape());
  const Shape outer = [&] { Shape s = x.shape(); s[s.ndim - 1] = 1; return s; }();
  detail::for_each_index(outer, [&](const int64_t* idx) {
    int64_t i[kMaxDims];
    for (int k = 0; k < x.ndim(); ++k) i[k] = idx[k];
    double m = -INFINITY, s = 0;
    for (i[x.ndim() - 1] = 0; i[x.ndim() - 1] < d; ++i[x.ndim() - 1]) m = std::max(m, double(detail::elem(x, i)));
    for (i[x.ndim() - 1] = 0; i[x.ndim() - 1] < d; ++i[x.ndim() - 1])
      s += m == -INFINITY ? 0.0 : std::exp(double(detail::elem(x, i)) - m);
    for (i[x.ndim() - 1] = 0; i[x.ndim() - 1] < d; ++i[x.ndim() - 1])
      detail::elem(y, i) = s == 0 ? 0.0f : float(std::exp(double(detail::elem(x, i)) - m) / s);
  });
  return y;
}

void softmax_backward(const Tensor& y, const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  const int64_t d = y.dim(-1);
  const Shape outer = [&] { Shape s = y.shape(); s[s.ndim - 1] = 1; return s; }();
  const int last = y.ndim() - 1;
  detail::for_each_index(outer, [&](const int64_t* idx) {
    int64_t i[kMaxDims];
    for (int k = 0; k < y.ndim(); ++k) i[k] = idx[k];
    double s = 0;
    for (i[last] = 0; i[last] < d; ++i[last]) s += double(detail::elem(dy, i)) * detail::elem(y, i);
    for (i[last] = 0; i[last] < d; ++i[last])
      detail::elem(*dx, i) += float(detail::elem(y, i) * (detail::elem(dy, i) - s));
  });
}

}  // namespace ref
}  // namespace ocellus::ops
