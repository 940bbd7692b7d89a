#include "ocellus/ops/rope.h"

#include <algorithm>
#include <cmath>

#include "ocellus/core/threads.h"
#include "ops/util.h"

namespace ocellus::ops {
namespace {

void check(const Tensor& x, const std::vector<int32_t>& pos, const RopeParams& p, const char* op) {
  detail::require_f32(x, op, "x");
  OCELLUS_CHECK(x.ndim() == 3, op, ": x must be [n_tok, n_head, head_dim], got ", x.shape().str());
  OCELLUS_CHECK(int64_t(pos.size()) == x.dim(0), op, ": ", pos.size(), " positions for ", x.dim(0),
                " tokens");
  OCELLUS_CHECK(p.n_rot > 0 && p.n_rot % 2 == 0 && p.n_rot <= x.dim(2), op, ": n_rot ", p.n_rot,
                " must be even and within head_dim ", x.dim(2));
}

// Index of the two elements of pair i within a head.
inline void pair(RopeMode m, int64_t n_rot, int64_t i, int64_t* a, int64_t* b) {
  *a = m == RopeMode::Adjacent ? 2 * i : i;
  *b = m == RopeMode::Adjacent ? 2 * i + 1 : i + n_rot / 2;
}

// y = rotate(x, sign * angle); accumulate adds into y instead of overwriting.
void apply(const Tensor& x_in, const std::vector<int32_t>& pos, const RopeParams& p, float sign,
           float* y, bool accumulate) {
  const Tensor x = x_in.contiguous();
  const int64_t n_tok = x.dim(0), n_head = x.dim(1), hd = x.dim(2), half = p.n_rot / 2;
  // Angles in double: at positions in the thousands a float angle is already off by 1e-4 rad.
  // cos/sin are computed once per (token, pair) and shared by all heads, so this costs little.
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq[i] = double(p.freq_scale) * std::pow(double(p.theta), -2.0 * double(i) / double(p.n_rot));
  // cos / sin of one position, the same for every head.
  auto angles = [&](int32_t position, float* cs, float* sn) {
    if (p.angles == RopeAngles::Ggml) {
      const float scale = std::pow(p.theta, -2.0f / float(p.n_rot));
      float theta = float(position);
      for (int64_t i = 0; i < half; ++i, theta *= scale) {
        cs[i] = std::cos(p.freq_scale * theta);
        sn[i] = sign * std::sin(p.freq_scale * theta);
      }
    } else {
      for (int64_t i = 0; i < half; ++i) {
        const double a = double(position) * inv_freq[i];
        cs[i] = float(std::cos(a));
        sn[i] = sign * float(std::sin(a));
      }
    }
  };
  // A training batch is many sequences whose positions repeat (0, 1, 2, ... per sequence): the
  // table then holds each position's angles once, not once per token.
  // (plain variables, not a structured binding: clang 14 cannot capture those in a lambda)
  const int64_t lo = n_tok ? *std::min_element(pos.begin(), pos.end()) : 0;
  const int64_t span = n_tok ? int64_t(*std::max_element(pos.begin(), pos.end())) - lo + 1 : 0;
  const bool table = span > 0 && span * 2 <= n_tok;
  std::vector<float> tab(table ? size_t(span * 2 * half) : 0);
  if (table)
    parallel_for(span, 8, [&](int64_t a, int64_t b) {
      for (int64_t q = a; q < b; ++q) angles(int32_t(lo + q), &tab[q * 2 * half], &tab[q * 2 * half + half]);
    });
  const float* xp = x.data<float>();
  parallel_for(n_tok, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> cs_own(static_cast<size_t>(half)), sn_own(static_cast<size_t>(half));
    for (int64_t t = t0; t < t1; ++t) {
      const float* cs = cs_own.data();
      const float* sn = sn_own.data();
      if (table) {
        cs = &tab[(pos[t] - lo) * 2 * half];
        sn = cs + half;
      } else {
        angles(pos[t], cs_own.data(), sn_own.data());
      }
      for (int64_t h = 0; h < n_head; ++h) {
        const float* xr = xp + (t * n_head + h) * hd;
        float* yr = y + (t * n_head + h) * hd;
        for (int64_t i = 0; i < half; ++i) {
          int64_t a, b;
          pair(p.mode, p.n_rot, i, &a, &b);
          const float u = xr[a] * cs[i] - xr[b] * sn[i], v = xr[a] * sn[i] + xr[b] * cs[i];
          yr[a] = accumulate ? yr[a] + u : u;
          yr[b] = accumulate ? yr[b] + v : v;
        }
        for (int64_t j = p.n_rot; j < hd; ++j) yr[j] = accumulate ? yr[j] + xr[j] : xr[j];
      }
    }
  });
}

}  // namespace

Tensor rope(const Tensor& x, const std::vector<int32_t>& pos, const RopeParams& p) {
  check(x, pos, p, "rope");
  Tensor y = Tensor::empty(x.shape());
  apply(x, pos, p, 1.0f, y.data<float>(), false);
  return y;
}

void rope_backward(const Tensor& dy, const std::vector<int32_t>& pos, const RopeParams& p,
                   Tensor* dx) {
  check(dy, pos, p, "rope_backward");
  if (!dx) return;
  detail::check_grad(dx, dy.shape(), "rope_backward", "dx");
  apply(dy, pos, p, -1.0f, dx->data<float>(), true);
}

namespace ref {

static void rotate(const Tensor& x, const std::vector<int32_t>& pos, const RopeParams& p,
                   double sign, Tensor& y, bool accumulate) {
  const int64_t n_rot = p.n_rot;
  for (int64_t t = 0; t < x.dim(0); ++t)
    for (int64_t h = 0; h < x.dim(1); ++h) {
      for (int64_t j = 0; j < x.dim(2); ++j) {
        double v;
        if (j >= n_rot) {
          v = x.at({t, h, j});
        } else {
          // which pair j belongs to, and whether it is the first or second element
          int64_t i, a, b;
          if (p.mode == RopeMode::Adjacent) i = j / 2;
          else i = j % (n_rot / 2);
          pair(p.mode, n_rot, i, &a, &b);
          const double ang = sign * double(pos[t]) * p.freq_scale *
                             std::pow(double(p.theta), -2.0 * double(i) / double(n_rot));
          const double xa = x.at({t, h, a}), xb = x.at({t, h, b});
          v = j == a ? xa * std::cos(ang) - xb * std::sin(ang) : xa * std::sin(ang) + xb * std::cos(ang);
        }
        float& out = y.at({t, h, j});
        out = accumulate ? out + float(v) : float(v);
      }
    }
}

Tensor rope(const Tensor& x, const std::vector<int32_t>& pos, const RopeParams& p) {
  check(x, pos, p, "ref::rope");
  Tensor y = Tensor::empty(x.shape());
  rotate(x, pos, p, 1.0, y, false);
  return y;
}

void rope_backward(const Tensor& dy, const std::vector<int32_t>& pos, const RopeParams& p,
                   Tensor* dx) {
  check(dy, pos, p, "ref::rope_backward");
  if (dx) rotate(dy, pos, p, -1.0, *dx, true);
}

}  // namespace ref
}  // namespace ocellus::ops
