#include "ocellus/ops/norm.h"

#include <cmath>
#include <vector>

#include "ocellus/core/threads.h"
#include "ops/util.h"

namespace ocellus::ops {
namespace {

struct Rows {
  Tensor x;  // contiguous [rows, d]
  int64_t rows = 0, d = 0;
  const float* w = nullptr;
  const float* b = nullptr;
  Tensor wc, bc;
};

Rows prepare(const Tensor& x, const Tensor* w, const Tensor* b, const char* op) {
  detail::require_f32(x, op, "x");
  Rows r;
  r.x = x.contiguous();
  r.rows = x.shape().rows();
  r.d = x.dim(-1);
  // The weight or bias (when given) as d contiguous values, kept alive in `keep`.
  auto vec = [&](const Tensor* t, const char* what, Tensor& keep) -> const float* {
    if (!t) return nullptr;
    detail::require_f32(*t, op, what);
    OCELLUS_CHECK(t->numel() == r.d, op, ": ", what, " of ", t->numel(), " values for rows of ", r.d);
    keep = t->contiguous();
    return keep.data<float>();
  };
  r.w = vec(w, "weight", r.wc);
  r.b = vec(b, "bias", r.bc);
  return r;
}

// Column sums Σ_rows f(row, col) added into g[col]; columns in parallel (no races).
template <typename F>
void column_sums(float* g, int64_t rows, int64_t d, F f) {
  parallel_for(d, 64, [&](int64_t c0, int64_t c1) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = c0; c < c1; ++c) g[c] += f(r, c);
  });
}

// Mean and 1/σ of one row (LayerNorm), shared by forward and backward.
// (The row sums run in 16 lanes: detail::lane_sum.)
inline void layer_norm_stats(const float* xr, int64_t d, float eps, float* mean, float* inv) {
  const float m = float(detail::lane_sum(d, [xr](int64_t j) { return xr[j]; }) / double(d));
  const double v = detail::lane_sum(d, [xr, m](int64_t j) { return (xr[j] - m) * (xr[j] - m); });
  *mean = m;
  *inv = 1.0f / std::sqrt(float(v / double(d)) + eps);
}

// 1 / sqrt(mean(x²) + eps) of one row (RMSNorm).
inline float rms_inv(const float* xr, int64_t d, float eps) {
  const double ss = detail::lane_sum(d, [xr](int64_t j) { return xr[j] * xr[j]; });
  return 1.0f / std::sqrt(float(ss / double(d)) + eps);
}

// y = fn applied to each row: fn(x row, y row), rows in parallel.
template <typename Fn>
Tensor map_rows(const Rows& r, const Shape& shape, Fn fn) {
  Tensor y = Tensor::empty(shape);
  const float* xp = r.x.data<float>();
  float* yp = y.data<float>();
  parallel_for(r.rows, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) fn(xp + i * r.d, yp + i * r.d);
  });
  return y;
}

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor* w, const Tensor* b, float eps) {
  const Rows r = prepare(x, w, b, "layer_norm");
  return map_rows(r, x.shape(), [&](const float* xr, float* yr) {
    float mean, inv;
    layer_norm_stats(xr, r.d, eps, &mean, &inv);
    for (int64_t j = 0; j < r.d; ++j) {
      float v = (xr[j] - mean) * inv;
      if (r.w) v *= r.w[j];
      if (r.b) v += r.b[j];
      yr[j] = v;
    }
  });
}

Tensor layer_norm_ggml_order(const Tensor& x, const Tensor* w, const Tensor* b, float eps) {
  const Rows r = prepare(x, w, b, "layer_norm_ggml_order");
  return map_rows(r, x.shape(), [&](const float* xr, float* yr) {
    double sum = 0.0;
    for (int64_t j = 0; j < r.d; ++j) sum += double(xr[j]);
    const float mean = float(sum / double(r.d));
    double sum2 = 0.0;
    for (int64_t j = 0; j < r.d; ++j) {
      const float v = xr[j] - mean;
      yr[j] = v;
      const float v2 = v * v;  // rounded to f32 before it is summed, as there
      sum2 += double(v2);
    }
    const float variance = float(sum2 / double(r.d));
    const float scale = 1.0f / std::sqrt(variance + eps);
    for (int64_t j = 0; j < r.d; ++j) yr[j] *= scale;
    if (r.w) for (int64_t j = 0; j < r.d; ++j) yr[j] *= r.w[j];
    if (r.b) for (int64_t j = 0; j < r.d; ++j) yr[j] += r.b[j];
  });
}

void layer_norm_backward(const Tensor& x, const Tensor* w, const Tensor& dy_in, float eps,
                         Tensor* dx, Tensor* dw, Tensor* db) {
  const Rows r = prepare(x, w, nullptr, "layer_norm_backward");
  detail::check_grad(dx, x.shape(), "layer_norm_backward", "dx");
  if (dw) OCELLUS_CHECK(w && dw->numel() == r.d, "layer_norm_backward: dw needs a weight of ", r.d);
  if (db) OCELLUS_CHECK(db->numel() == r.d, "layer_norm_backward: db must hold ", r.d, " values");
  const Tensor dy = dy_in.contiguous();
  const float *xp = r.x.data<float>(), *g = dy.data<float>();
  // per-row mean and 1/σ, reused by all three gradients
  std::vector<float> mean(size_t(r.rows)), inv(size_t(r.rows));
  parallel_for(r.rows, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) layer_norm_stats(xp + i * r.d, r.d, eps, &mean[i], &inv[i]);
  });
  auto xhat = [&](int64_t i, int64_t j) { return (xp[i * r.d + j] - mean[i]) * inv[i]; };
  if (dx) {
    float* dxp = dx->data<float>();
    parallel_for(r.rows, 8, [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) {
        // mean of dxhat, mean of dxhat * xhat
        const float* gi = g + i * r.d;
        const float s1 = r.w ? float(detail::lane_sum(r.d, [&](int64_t j) { return gi[j] * r.w[j]; }) / double(r.d))
                             : float(detail::lane_sum(r.d, [&](int64_t j) { return gi[j]; }) / double(r.d));
        const float s2 = r.w ? float(detail::lane_sum(r.d, [&](int64_t j) { return gi[j] * r.w[j] * xhat(i, j); }) / double(r.d))
                             : float(detail::lane_sum(r.d, [&](int64_t j) { return gi[j] * xhat(i, j); }) / double(r.d));
        for (int64_t j = 0; j < r.d; ++j) {
          const float gh = g[i * r.d + j] * (r.w ? r.w[j] : 1.0f);
          dxp[i * r.d + j] += inv[i] * (gh - s1 - xhat(i, j) * s2);
        }
      }
    });
  }
  if (dw) column_sums(dw->data<float>(), r.rows, r.d, [&](int64_t i, int64_t j) { return g[i * r.d + j] * xhat(i, j); });
  if (db) column_sums(db->data<float>(), r.rows, r.d, [&](int64_t i, int64_t j) { return g[i * r.d + j]; });
}

Tensor rms_norm(const Tensor& x, const Tensor* w, float eps) {
  const Rows r = prepare(x, w, nullptr, "rms_norm");
  return map_rows(r, x.shape(), [&](const float* xr, float* yr) {
    const float inv = rms_inv(xr, r.d, eps);
    for (int64_t j = 0; j < r.d; ++j) yr[j] = xr[j] * inv * (r.w ? r.w[j] : 1.0f);
  });
}

void rms_norm_backward(const Tensor& x, const Tensor* w, const Tensor& dy_in, float eps, Tensor* dx,
                       Tensor* dw) {
  const Rows r = prepare(x, w, nullptr, "rms_norm_backward");
  detail::check_grad(dx, x.shape(), "rms_norm_backward", "dx");
  if (dw) OCELLUS_CHECK(w && dw->numel() == r.d, "rms_norm_backward: dw needs a weight of ", r.d);
  const Tensor dy = dy_in.contiguous();
  const float *xp = r.x.data<float>(), *g = dy.data<float>();
  std::vector<float> inv(size_t(r.rows));
  parallel_for(r.rows, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) inv[i] = rms_inv(xp + i * r.d, r.d, eps);
  });
  if (dx) {
    float* dxp = dx->data<float>();
    parallel_for(r.rows, 8, [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) {
        const float *gi = g + i * r.d, *xi = xp + i * r.d;  // s: mean of dxhat * x
        const float s = r.w ? float(detail::lane_sum(r.d, [&](int64_t j) { return gi[j] * r.w[j] * xi[j]; }) / double(r.d))
                            : float(detail::lane_sum(r.d, [&](int64_t j) { return gi[j] * xi[j]; }) / double(r.d));
        const float k = inv[i] * inv[i] * s;
        for (int64_t j = 0; j < r.d; ++j)
          dxp[i * r.d + j] += inv[i] * (g[i * r.d + j] * (r.w ? r.w[j] : 1.0f) - xp[i * r.d + j] * k);
      }
    });
  }
  if (dw) column_sums(dw->data<float>(), r.rows, r.d, [&](int64_t i, int64_t j) { return g[i * r.d + j] * xp[i * r.d + j] * inv[i]; });
}

namespace ref {

// Row statistics in double over a strided last dimension.
static double row_at(const Tensor& t, int64_t row, int64_t j) {
  const Tensor c = t;  // strided access through the row index
  int64_t idx[kMaxDims] = {0, 0, 0, 0};
  int64_t rem = row;
  for (int dd = t.ndim() - 2; dd >= 0; --dd) {
    idx[dd] = rem % t.dim(dd);
    rem /= t.dim(dd);
  }
  idx[t.ndim() - 1] = j;
  return detail::elem(c, idx);
}

Tensor layer_norm(const Tensor& x, const Tensor* w, const Tensor* b, float eps) {
  const int64_t rows = x.shape().rows(), d = x.dim(-1);
  Tensor y = Tensor::empty(x.shape());
  for (int64_t i = 0; i < rows; ++i) {
    double m = 0, v = 0;
    for (int64_t j = 0; j < d; ++j) m += row_at(x, i, j);
    m /= double(d);
    for (int64_t j = 0; j < d; ++j) v += (row_at(x, i, j) - m) * (row_at(x, i, j) - m);
    const double inv = 1.0 / std::sqrt(v / double(d) + eps);
    for (int64_t j = 0; j < d; ++j)
      y.data<float>()[i * d + j] = float((row_at(x, i, j) - m) * inv * (w ? row_at(*w, 0, j) : 1.0) +
                                         (b ? row_at(*b, 0, j) : 0.0));
  }
  return y;
}

void layer_norm_backward(const Tensor& x, const Tensor* w, const Tensor& dy, float eps,
                         Tensor* dx, Tensor* dw, Tensor* db) {
  const int64_t rows = x.shape().rows(), d = x.dim(-1);
  for (int64_t i = 0; i < rows; ++i) {
    double m = 0, v = 0;
    for (int64_t j = 0; j < d; ++j) m += row_at(x, i, j);
    m /= double(d);
    for (int64_t j = 0; j < d; ++j) v += (row_at(x, i, j) - m) * (row_at(x, i, j) - m);
    const double inv = 1.0 / std::sqrt(v / double(d) + eps);
    double s1 = 0, s2 = 0;
    for (int64_t j = 0; j < d; ++j) {
      const double gh = row_at(dy, i, j) * (w ? row_at(*w, 0, j) : 1.0), xh = (row_at(x, i, j) - m) * inv;
      s1 += gh;
      s2 += gh * xh;
      if (dw) dw->data<float>()[j] += float(row_at(dy, i, j) * xh);
      if (db) db->data<float>()[j] += float(row_at(dy, i, j));
    }
    if (!dx) continue;
    for (int64_t j = 0; j < d; ++j) {
      const double gh = row_at(dy, i, j) * (w ? row_at(*w, 0, j) : 1.0), xh = (row_at(x, i, j) - m) * inv;
      dx->data<float>()[i * d + j] += float(inv * (gh - s1 / double(d) - xh * s2 / double(d)));
    }
  }
}

Tensor rms_norm(const Tensor& x, const Tensor* w, float eps) {
  const int64_t rows = x.shape().rows(), d = x.dim(-1);
  Tensor y = Tensor::empty(x.shape());
  for (int64_t i = 0; i < rows; ++i) {
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += row_at(x, i, j) * row_at(x, i, j);
    const double inv = 1.0 / std::sqrt(ss / double(d) + eps);
    for (int64_t j = 0; j < d; ++j)
      y.data<float>()[i * d + j] = float(row_at(x, i, j) * inv * (w ? row_at(*w, 0, j) : 1.0));
  }
  return y;
}

void rms_norm_backward(const Tensor& x, const Tensor* w, const Tensor& dy, float eps, Tensor* dx,
                       Tensor* dw) {
  const int64_t rows = x.shape().rows(), d = x.dim(-1);
  for (int64_t i = 0; i < rows; ++i) {
    double ss = 0, s = 0;
    for (int64_t j = 0; j < d; ++j) ss += row_at(x, i, j) * row_at(x, i, j);
    const double inv = 1.0 / std::sqrt(ss / double(d) + eps);
    for (int64_t j = 0; j < d; ++j) {
      s += row_at(dy, i, j) * (w ? row_at(*w, 0, j) : 1.0) * row_at(x, i, j);
      if (dw) dw->data<float>()[j] += float(row_at(dy, i, j) * row_at(x, i, j) * inv);
    }
    if (!dx) continue;
    for (int64_t j = 0; j < d; ++j)
      dx->data<float>()[i * d + j] += float(inv * (row_at(dy, i, j) * (w ? row_at(*w, 0, j) : 1.0) -
                                                   row_at(x, i, j) * inv * inv * s / double(d)));
  }
}

}  // namespace ref
}  // namespace ocellus::ops
