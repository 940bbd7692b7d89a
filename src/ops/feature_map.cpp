#include "ocellus/ops/feature_map.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "ocellus/core/threads.h"
#include "ocellus/ops/matmul.h"
#include "ops/util.h"

namespace ocellus::ops {
namespace {

struct ConvDims {
  int64_t B, H, W, C, O, k, Ho, Wo;
  int64_t K() const { return k * k * C; }      // one unfolded patch
  int64_t rows() const { return B * Ho * Wo; }  // output pixels
};

ConvDims check_conv(const Tensor& x, const Tensor& w, const Tensor* b, int64_t stride, int64_t pad, const char* op) {
  detail::require_f32(x, op, "x");
  detail::require_f32(w, op, "kernel");
  OCELLUS_CHECK(x.ndim() == 4, op, ": x must be [B, H, W, C], got ", x.shape().str());
  OCELLUS_CHECK(w.ndim() == 4 && w.dim(1) == w.dim(2) && w.dim(3) == x.dim(3), op, ": kernel ", w.shape().str(),
                " is not [O, k, k, ", x.dim(3), "]");
  OCELLUS_CHECK(stride >= 1 && pad >= 0 && pad < w.dim(1), op, ": stride ", stride, ", padding ", pad,
                " (stride must be >= 1, padding in [0, kernel size))");
  if (b) {
    detail::require_f32(*b, op, "bias");
    OCELLUS_CHECK(b->shape() == Shape({w.dim(0)}), op, ": bias ", b->shape().str(), " is not [", w.dim(0), "]");
  }
  ConvDims d{x.dim(0), x.dim(1), x.dim(2), x.dim(3), w.dim(0), w.dim(1), 0, 0};
  d.Ho = conv_out_side(d.H, d.k, stride, pad, op), d.Wo = conv_out_side(d.W, d.k, stride, pad, op);
  return d;
}

// A 1x1 convolution with stride 1 and no padding reads x's pixels as they are: no unfolding.
bool pointwise(const ConvDims& d, int64_t stride, int64_t pad) { return d.k == 1 && stride == 1 && pad == 0; }

// The patches as GEMM rows (im2col): row (b, oy, ox) holds input pixels (oy·s - p + ky,
// ox·s - p + kx) for ky, kx in order, C channels each, zeros outside the image. xc contiguous.
Tensor unfold(const Tensor& xc, const ConvDims& d, int64_t s, int64_t p) {
  if (pointwise(d, s, p)) return xc.reshape({d.rows(), d.C});
  Tensor cols = Tensor::empty({d.rows(), d.K()});
  const float* xp = xc.data<float>();
  float* cp = cols.data<float>();
  const size_t px = size_t(d.C) * sizeof(float);
  parallel_for(d.B * d.Ho, 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / d.Ho, oy = r % d.Ho;
      for (int64_t ox = 0; ox < d.Wo; ++ox) {
        float* row = cp + (r * d.Wo + ox) * d.K();
        for (int64_t ky = 0; ky < d.k; ++ky)
          for (int64_t kx = 0; kx < d.k; ++kx) {
            const int64_t iy = oy * s - p + ky, ix = ox * s - p + kx;
            float* dst = row + (ky * d.k + kx) * d.C;
            if (iy < 0 || iy >= d.H || ix < 0 || ix >= d.W) std::memset(dst, 0, px);
            else std::memcpy(dst, xp + ((b * d.H + iy) * d.W + ix) * d.C, px);
          }
      }
    }
  });
  return cols;
}

// dx += the unfolded gradient folded back (col2im), as a gather: each input pixel sums the
// patch entries that read it, so threads write disjoint pixels.
void fold_into(const Tensor& dcols, const ConvDims& d, int64_t s, int64_t p, Tensor* dx) {
  const float* gp = dcols.data<float>();
  float* xp = dx->data<float>();
  parallel_for(d.B * d.H, 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / d.H, iy = r % d.H;
      for (int64_t ix = 0; ix < d.W; ++ix) {
        float* o = xp + (r * d.W + ix) * d.C;
        for (int64_t ky = 0; ky < d.k; ++ky) {
          const int64_t ty = iy + p - ky;
          if (ty < 0 || ty % s != 0 || ty / s >= d.Ho) continue;
          for (int64_t kx = 0; kx < d.k; ++kx) {
            const int64_t tx = ix + p - kx;
            if (tx < 0 || tx % s != 0 || tx / s >= d.Wo) continue;
            const float* g = gp + ((b * d.Ho + ty / s) * d.Wo + tx / s) * d.K() + (ky * d.k + kx) * d.C;
            for (int64_t c = 0; c < d.C; ++c) o[c] += g[c];
          }
        }
      }
    }
  });
}

struct NormDims {
  int64_t B, n, C, G;
  int64_t cg() const { return C / G; }        // channels per group
  int64_t m() const { return n * cg(); }      // elements per (image, group)
};

NormDims check_group_norm(const Tensor& x, const Tensor* w, const Tensor* b, int64_t groups, float eps, const char* op) {
  detail::require_f32(x, op, "x");
  OCELLUS_CHECK(x.ndim() >= 2 && x.numel() > 0, op, ": x must be [B, ..., C], got ", x.shape().str());
  const int64_t B = x.dim(0), C = x.dim(-1);
  OCELLUS_CHECK(groups >= 1 && C % groups == 0, op, ": ", groups, " groups do not divide ", C, " channels");
  OCELLUS_CHECK(eps > 0, op, ": epsilon ", eps, " must be > 0");
  for (const Tensor* t : {w, b}) {
    if (!t) continue;
    detail::require_f32(*t, op, t == w ? "weight" : "bias");
    OCELLUS_CHECK(t->shape() == Shape({C}), op, ": ", t == w ? "weight " : "bias ", t->shape().str(), " is not [", C, "]");
  }
  return {B, x.numel() / (B * C), C, groups};
}

// Mean and 1/sqrt(biased variance + eps) of each (image, group), two passes in double.
void group_stats(const float* xp, const NormDims& d, float eps, std::vector<double>& mean, std::vector<double>& rstd) {
  mean.assign(size_t(d.B * d.G), 0.0), rstd.assign(size_t(d.B * d.G), 0.0);
  parallel_for(d.B * d.G, 1, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const float* base = xp + (q / d.G) * d.n * d.C + (q % d.G) * d.cg();
      double s = 0, v = 0;
      for (int64_t i = 0; i < d.n; ++i)
        for (int64_t c = 0; c < d.cg(); ++c) s += base[i * d.C + c];
      const double mu = s / double(d.m());
      for (int64_t i = 0; i < d.n; ++i)
        for (int64_t c = 0; c < d.cg(); ++c) v += (base[i * d.C + c] - mu) * (base[i * d.C + c] - mu);
      mean[size_t(q)] = mu, rstd[size_t(q)] = 1.0 / std::sqrt(v / double(d.m()) + double(eps));
    }
  });
}

void check_upsample(const Tensor& x, const char* op) {
  detail::require_f32(x, op, "x");
  OCELLUS_CHECK(x.ndim() == 4, op, ": x must be [B, H, W, C], got ", x.shape().str());
}

}  // namespace

int64_t conv_out_side(int64_t n, int64_t k, int64_t stride, int64_t pad, const char* op) {
  const int64_t span = n + 2 * pad - k;
  OCELLUS_CHECK(k >= 1 && stride >= 1 && span >= 0, op, ": a ", k, "x", k, " kernel does not fit a side of ", n,
                " with padding ", pad);
  return span / stride + 1;
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* b, int64_t stride, int64_t pad) {
  const ConvDims d = check_conv(x, w, b, stride, pad, "conv2d");
  const Tensor y = matmul(unfold(x.contiguous(), d, stride, pad), w.contiguous().reshape({d.O, d.K()}), b);
  return y.reshape({d.B, d.Ho, d.Wo, d.O});
}

void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, int64_t stride, int64_t pad, Tensor* dx,
                     Tensor* dw, Tensor* db) {
  const char* op = "conv2d_backward";
  const ConvDims d = check_conv(x, w, nullptr, stride, pad, op);
  detail::check_grad(dx, x.shape(), op, "dx");
  detail::check_grad(dw, w.shape(), op, "dw");
  detail::check_grad(db, Shape({d.O}), op, "db");
  OCELLUS_CHECK(dy.shape() == Shape({d.B, d.Ho, d.Wo, d.O}), op, ": dy ", dy.shape().str(), " is not [", d.B, ", ", d.Ho,
                ", ", d.Wo, ", ", d.O, "]");
  const Tensor cols = unfold(x.contiguous(), d, stride, pad), w2 = w.contiguous().reshape({d.O, d.K()});
  const Tensor g = dy.contiguous().reshape({d.rows(), d.O});
  Tensor dw2 = dw ? dw->reshape({d.O, d.K()}) : Tensor();
  Tensor dcols;
  if (dx) dcols = pointwise(d, stride, pad) ? dx->reshape({d.rows(), d.C}) : Tensor::empty({d.rows(), d.K()});
  // The patches' gradient is written (overwrite) unless it is dx itself, which accumulates.
  const bool fresh = dx && !pointwise(d, stride, pad);
  matmul_backward(cols, w2, g, dx ? &dcols : nullptr, dw ? &dw2 : nullptr, db, fresh);
  if (fresh) fold_into(dcols, d, stride, pad, dx);
}

Tensor group_norm(const Tensor& x_in, const Tensor& w, const Tensor& b, int64_t groups, float eps) {
  const NormDims d = check_group_norm(x_in, &w, &b, groups, eps, "group_norm");
  const Tensor x = x_in.contiguous();
  std::vector<double> mean, rstd;
  group_stats(x.data<float>(), d, eps, mean, rstd);
  Tensor y = Tensor::empty(x.shape());
  const Tensor wc = w.contiguous(), bc = b.contiguous();
  const float *xp = x.data<float>(), *wp = wc.data<float>(), *bp = bc.data<float>();
  float* yp = y.data<float>();
  parallel_for(d.B * d.n, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < d.C; ++c) {
        const size_t q = size_t((r / d.n) * d.G + c / d.cg());
        yp[r * d.C + c] = float((xp[r * d.C + c] - mean[q]) * rstd[q]) * wp[c] + bp[c];
      }
  });
  return y;
}

void group_norm_backward(const Tensor& x_in, const Tensor& w, int64_t groups, float eps, const Tensor& dy_in, Tensor* dx,
                         Tensor* dw, Tensor* db) {
  const char* op = "group_norm_backward";
  const NormDims d = check_group_norm(x_in, &w, nullptr, groups, eps, op);
  detail::check_grad(dx, x_in.shape(), op, "dx");
  detail::check_grad(dw, w.shape(), op, "dw");
  detail::check_grad(db, w.shape(), op, "db");
  OCELLUS_CHECK(dy_in.shape() == x_in.shape(), op, ": dy ", dy_in.shape().str(), " is not ", x_in.shape().str());
  const Tensor x = x_in.contiguous(), dy = dy_in.contiguous(), wc = w.contiguous();
  const float *xp = x.data<float>(), *gp = dy.data<float>(), *wp = wc.data<float>();
  std::vector<double> mean, rstd;
  group_stats(xp, d, eps, mean, rstd);
  // One pass per (image, group), in parallel: dx = rstd (ĝ - mean ĝ - x̂ mean(ĝ x̂)) with ĝ = dy w,
  // and the group's channels' shares of dw = Σ dy x̂ and db = Σ dy for that image (disjoint
  // slots), summed over the images after.
  std::vector<double> pw(size_t(d.B * d.C), 0.0), pb(size_t(d.B * d.C), 0.0);
  float* gx = dx ? dx->data<float>() : nullptr;
  parallel_for(d.B * d.G, 1, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t b = q / d.G, r0 = b * d.n, c0 = (q % d.G) * d.cg();
      const double mu = mean[size_t(q)], rs = rstd[size_t(q)];
      double s1 = 0, s2 = 0;
      for (int64_t r = r0; r < r0 + d.n; ++r)
        for (int64_t c = c0; c < c0 + d.cg(); ++c) {
          const double g = gp[r * d.C + c], xh = (xp[r * d.C + c] - mu) * rs;
          s1 += g * wp[c], s2 += g * wp[c] * xh;
          pw[size_t(b * d.C + c)] += g * xh, pb[size_t(b * d.C + c)] += g;
        }
      if (!gx) continue;
      s1 /= double(d.m()), s2 /= double(d.m());
      for (int64_t r = r0; r < r0 + d.n; ++r)
        for (int64_t c = c0; c < c0 + d.cg(); ++c) {
          const double xh = (xp[r * d.C + c] - mu) * rs;
          gx[r * d.C + c] += float(rs * (double(gp[r * d.C + c]) * wp[c] - s1 - xh * s2));
        }
    }
  });
  for (int64_t c = 0; c < d.C; ++c) {
    double sw = 0, sb = 0;
    for (int64_t b = 0; b < d.B; ++b) sw += pw[size_t(b * d.C + c)], sb += pb[size_t(b * d.C + c)];
    if (dw) dw->data<float>()[c] += float(sw);
    if (db) db->data<float>()[c] += float(sb);
  }
}

Tensor upsample2x(const Tensor& x_in) {
  check_upsample(x_in, "upsample2x");
  const Tensor x = x_in.contiguous();
  const int64_t B = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  Tensor y = Tensor::empty({B, 2 * H, 2 * W, C});
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  const size_t px = size_t(C) * sizeof(float);
  parallel_for(B * 2 * H, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {  // output row r of image r / 2H reads input row (r % 2H) / 2
      const float* src = xp + ((r / (2 * H)) * H + (r % (2 * H)) / 2) * W * C;
      float* dst = yp + r * 2 * W * C;
      for (int64_t j = 0; j < W; ++j) {
        std::memcpy(dst + 2 * j * C, src + j * C, px);
        std::memcpy(dst + (2 * j + 1) * C, src + j * C, px);
      }
    }
  });
  return y;
}

void upsample2x_backward(const Tensor& dy_in, Tensor* dx) {
  if (!dx) return;
  check_upsample(*dx, "upsample2x_backward");
  const int64_t B = dx->dim(0), H = dx->dim(1), W = dx->dim(2), C = dx->dim(3);
  detail::check_grad(dx, dx->shape(), "upsample2x_backward", "dx");
  OCELLUS_CHECK(dy_in.shape() == Shape({B, 2 * H, 2 * W, C}), "upsample2x_backward: dy ", dy_in.shape().str(), " is not [",
                B, ", ", 2 * H, ", ", 2 * W, ", ", C, "]");
  const Tensor dy = dy_in.contiguous();
  const float* gp = dy.data<float>();
  float* xp = dx->data<float>();
  parallel_for(B * H, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {  // input row r: output rows 2r and 2r + 1 of its image
      const float* top = gp + ((r / H) * 2 * H + 2 * (r % H)) * 2 * W * C;
      const float* bottom = top + 2 * W * C;
      for (int64_t j = 0; j < W; ++j)
        for (int64_t c = 0; c < C; ++c) {
          const int64_t a = 2 * j * C + c, e = a + C;
          xp[(r * W + j) * C + c] += (top[a] + top[e]) + (bottom[a] + bottom[e]);
        }
    }
  });
}

// ---- naive references: loops over every index, sums in double ----------------------------------

namespace ref {

Tensor conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor* b, int64_t stride, int64_t pad) {
  const ConvDims d = check_conv(x_in, w_in, b, stride, pad, "ref::conv2d");
  const Tensor x = x_in.contiguous(), w = w_in.contiguous();
  Tensor y = Tensor::empty({d.B, d.Ho, d.Wo, d.O});
  for (int64_t n = 0; n < d.B; ++n)
    for (int64_t oy = 0; oy < d.Ho; ++oy)
      for (int64_t ox = 0; ox < d.Wo; ++ox)
        for (int64_t o = 0; o < d.O; ++o) {
          double s = b ? double(b->at({o})) : 0.0;
          for (int64_t ky = 0; ky < d.k; ++ky)
            for (int64_t kx = 0; kx < d.k; ++kx) {
              const int64_t iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
              if (iy < 0 || iy >= d.H || ix < 0 || ix >= d.W) continue;
              for (int64_t c = 0; c < d.C; ++c) s += double(x.at({n, iy, ix, c})) * w.at({o, ky, kx, c});
            }
          y.at({n, oy, ox, o}) = float(s);
        }
  return y;
}

void conv2d_backward(const Tensor& x_in, const Tensor& w_in, const Tensor& dy_in, int64_t stride, int64_t pad, Tensor* dx,
                     Tensor* dw, Tensor* db) {
  const ConvDims d = check_conv(x_in, w_in, nullptr, stride, pad, "ref::conv2d_backward");
  const Tensor x = x_in.contiguous(), w = w_in.contiguous(), dy = dy_in.contiguous();
  std::vector<double> gx(size_t(x.numel()), 0.0), gw(size_t(w.numel()), 0.0), gb(size_t(d.O), 0.0);
  for (int64_t n = 0; n < d.B; ++n)
    for (int64_t oy = 0; oy < d.Ho; ++oy)
      for (int64_t ox = 0; ox < d.Wo; ++ox)
        for (int64_t o = 0; o < d.O; ++o) {
          const double g = dy.at({n, oy, ox, o});
          gb[size_t(o)] += g;
          for (int64_t ky = 0; ky < d.k; ++ky)
            for (int64_t kx = 0; kx < d.k; ++kx) {
              const int64_t iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
              if (iy < 0 || iy >= d.H || ix < 0 || ix >= d.W) continue;
              for (int64_t c = 0; c < d.C; ++c) {
                gx[size_t(((n * d.H + iy) * d.W + ix) * d.C + c)] += g * w.at({o, ky, kx, c});
                gw[size_t(((o * d.k + ky) * d.k + kx) * d.C + c)] += g * x.at({n, iy, ix, c});
              }
            }
        }
  auto add = [](Tensor* t, const std::vector<double>& v) {
    if (t)
      for (size_t i = 0; i < v.size(); ++i) t->data<float>()[i] += float(v[i]);
  };
  add(dx, gx), add(dw, gw), add(db, gb);
}

Tensor group_norm(const Tensor& x_in, const Tensor& w, const Tensor& b, int64_t groups, float eps) {
  const NormDims d = check_group_norm(x_in, &w, &b, groups, eps, "ref::group_norm");
  const Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape());
  for (int64_t n = 0; n < d.B; ++n)
    for (int64_t g = 0; g < d.G; ++g) {
      double s = 0, v = 0;
      for (int64_t i = 0; i < d.n; ++i)
        for (int64_t c = g * d.cg(); c < (g + 1) * d.cg(); ++c) s += x.data<float>()[(n * d.n + i) * d.C + c];
      const double mu = s / double(d.m());
      for (int64_t i = 0; i < d.n; ++i)
        for (int64_t c = g * d.cg(); c < (g + 1) * d.cg(); ++c) {
          const double e = x.data<float>()[(n * d.n + i) * d.C + c] - mu;
          v += e * e;
        }
      const double rs = 1.0 / std::sqrt(v / double(d.m()) + eps);
      for (int64_t i = 0; i < d.n; ++i)
        for (int64_t c = g * d.cg(); c < (g + 1) * d.cg(); ++c) {
          const int64_t k = (n * d.n + i) * d.C + c;
          y.data<float>()[k] = float((x.data<float>()[k] - mu) * rs * w.at({c}) + b.at({c}));
        }
    }
  return y;
}

void group_norm_backward(const Tensor& x_in, const Tensor& w, int64_t groups, float eps, const Tensor& dy_in, Tensor* dx,
                         Tensor* dw, Tensor* db) {
  const NormDims d = check_group_norm(x_in, &w, nullptr, groups, eps, "ref::group_norm_backward");
  const Tensor x = x_in.contiguous(), dy = dy_in.contiguous();
  const float *xp = x.data<float>(), *gp = dy.data<float>();
  std::vector<double> sw(size_t(d.C), 0.0), sb(size_t(d.C), 0.0);
  for (int64_t n = 0; n < d.B; ++n)
    for (int64_t g = 0; g < d.G; ++g) {
      std::vector<int64_t> ks;  // the group's elements
      for (int64_t i = 0; i < d.n; ++i)
        for (int64_t c = g * d.cg(); c < (g + 1) * d.cg(); ++c) ks.push_back((n * d.n + i) * d.C + c);
      double mu = 0, var = 0;
      for (int64_t k : ks) mu += xp[k];
      mu /= double(ks.size());
      for (int64_t k : ks) var += (xp[k] - mu) * (xp[k] - mu);
      const double rs = 1.0 / std::sqrt(var / double(ks.size()) + eps);
      double s1 = 0, s2 = 0;
      for (int64_t k : ks) {
        const double gh = double(gp[k]) * w.at({k % d.C});
        s1 += gh, s2 += gh * (xp[k] - mu) * rs;
      }
      for (int64_t k : ks) {
        const double xh = (xp[k] - mu) * rs, gh = double(gp[k]) * w.at({k % d.C});
        if (dx) dx->data<float>()[k] += float(rs * (gh - s1 / double(ks.size()) - xh * s2 / double(ks.size())));
        sw[size_t(k % d.C)] += gp[k] * xh, sb[size_t(k % d.C)] += gp[k];
      }
    }
  for (int64_t c = 0; c < d.C; ++c) {
    if (dw) dw->data<float>()[c] += float(sw[size_t(c)]);
    if (db) db->data<float>()[c] += float(sb[size_t(c)]);
  }
}

Tensor upsample2x(const Tensor& x) {
  check_upsample(x, "ref::upsample2x");
  Tensor y = Tensor::empty({x.dim(0), 2 * x.dim(1), 2 * x.dim(2), x.dim(3)});
  detail::for_each_index(y.shape(), [&](const int64_t* i) { y.at({i[0], i[1], i[2], i[3]}) = x.at({i[0], i[1] / 2, i[2] / 2, i[3]}); });
  return y;
}

void upsample2x_backward(const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  check_upsample(*dx, "ref::upsample2x_backward");
  detail::for_each_index(dy.shape(), [&](const int64_t* i) { dx->at({i[0], i[1] / 2, i[2] / 2, i[3]}) += dy.at({i[0], i[1], i[2], i[3]}); });
}

}  // namespace ref

}  // namespace ocellus::ops
