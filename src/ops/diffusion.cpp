#include "ocellus/ops/diffusion.h"

#include <algorithm>
#include <cmath>

#include "ocellus/core/threads.h"
#include "ops/util.h"

namespace ocellus::ops {
namespace {

void check_embedding(const std::vector<float>& t, int64_t dim, float max_period, const char* op) {
  OCELLUS_CHECK(!t.empty(), op, ": no timesteps");
  OCELLUS_CHECK(dim >= 2 && dim % 2 == 0, op, ": width ", dim, " must be even and >= 2");
  OCELLUS_CHECK(max_period > 1, op, ": max_period ", max_period, " must be > 1");
}

void check_pair(const Tensor& pred, const Tensor& target, const char* op) {
  detail::require_f32(pred, op, "pred");
  detail::require_f32(target, op, "target");
  OCELLUS_CHECK(pred.shape() == target.shape() && pred.numel() > 0, op, ": pred ", pred.shape().str(), " and target ",
                target.shape().str(), " must be the same non-empty shape");
}

float clamp_logvar(float v) { return std::fmin(std::fmax(v, kLogvarMin), kLogvarMax); }
bool clamped(float v) { return v < kLogvarMin || v > kLogvarMax; }

}  // namespace

Tensor gaussian_sample(const Tensor& mean_in, const Tensor& logvar_in, const Tensor& noise_in) {
  check_pair(mean_in, logvar_in, "gaussian_sample");
  check_pair(mean_in, noise_in, "gaussian_sample");
  const Tensor m = mean_in.contiguous(), lv = logvar_in.contiguous(), e = noise_in.contiguous();
  Tensor y = Tensor::empty(m.shape());
  const float *mp = m.data<float>(), *lp = lv.data<float>(), *ep = e.data<float>();
  float* yp = y.data<float>();
  parallel_for(m.numel(), 4096, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) yp[i] = mp[i] + std::exp(0.5f * clamp_logvar(lp[i])) * ep[i];
  });
  return y;
}

void gaussian_sample_backward(const Tensor& logvar_in, const Tensor& noise_in, const Tensor& dy_in, Tensor* dmean,
                              Tensor* dlogvar) {
  check_pair(logvar_in, noise_in, "gaussian_sample_backward");
  check_pair(logvar_in, dy_in, "gaussian_sample_backward");
  detail::check_grad(dmean, logvar_in.shape(), "gaussian_sample_backward", "dmean");
  detail::check_grad(dlogvar, logvar_in.shape(), "gaussian_sample_backward", "dlogvar");
  const Tensor lv = logvar_in.contiguous(), e = noise_in.contiguous(), dy = dy_in.contiguous();
  const float *lp = lv.data<float>(), *ep = e.data<float>(), *gp = dy.data<float>();
  parallel_for(lv.numel(), 4096, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) {
      if (dmean) dmean->data<float>()[i] += gp[i];
      if (dlogvar && !clamped(lp[i])) dlogvar->data<float>()[i] += gp[i] * 0.5f * std::exp(0.5f * lp[i]) * ep[i];
    }
  });
}

float gaussian_kl(const Tensor& mean_in, const Tensor& logvar_in) {
  check_pair(mean_in, logvar_in, "gaussian_kl");
  const Tensor m = mean_in.contiguous(), lv = logvar_in.contiguous();
  const float *mp = m.data<float>(), *lp = lv.data<float>();
  const double s = detail::lane_sum(m.numel(), [&](int64_t i) {
    const float l = clamp_logvar(lp[i]);
    return mp[i] * mp[i] + std::exp(l) - 1.0f - l;
  });
  return float(0.5 * s / double(m.numel()));
}

void gaussian_kl_backward(const Tensor& mean_in, const Tensor& logvar_in, float dloss, Tensor* dmean, Tensor* dlogvar) {
  check_pair(mean_in, logvar_in, "gaussian_kl_backward");
  detail::check_grad(dmean, mean_in.shape(), "gaussian_kl_backward", "dmean");
  detail::check_grad(dlogvar, logvar_in.shape(), "gaussian_kl_backward", "dlogvar");
  const Tensor m = mean_in.contiguous(), lv = logvar_in.contiguous();
  const float *mp = m.data<float>(), *lp = lv.data<float>(), k = dloss / float(m.numel());
  parallel_for(m.numel(), 4096, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) {
      if (dmean) dmean->data<float>()[i] += k * mp[i];
      if (dlogvar && !clamped(lp[i])) dlogvar->data<float>()[i] += k * 0.5f * (std::exp(lp[i]) - 1.0f);
    }
  });
}

Tensor timestep_embedding(const std::vector<float>& t, int64_t dim, float max_period) {
  check_embedding(t, dim, max_period, "timestep_embedding");
  const int64_t n = int64_t(t.size()), half = dim / 2;
  std::vector<float> freq(static_cast<size_t>(half));
  for (int64_t j = 0; j < half; ++j) freq[size_t(j)] = std::exp(-std::log(max_period) * float(j) / float(half));
  Tensor y = Tensor::empty({n, dim});
  float* yp = y.data<float>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < half; ++j) {
      const float a = t[size_t(i)] * freq[size_t(j)];
      yp[i * dim + j] = std::cos(a), yp[i * dim + half + j] = std::sin(a);
    }
  return y;
}

float mse(const Tensor& pred_in, const Tensor& target_in) {
  check_pair(pred_in, target_in, "mse");
  const Tensor p = pred_in.contiguous(), t = target_in.contiguous();
  const float *pp = p.data<float>(), *tp = t.data<float>();
  const double s = detail::lane_sum(p.numel(), [&](int64_t i) { return (pp[i] - tp[i]) * (pp[i] - tp[i]); });
  return float(s / double(p.numel()));
}

void mse_backward(const Tensor& pred_in, const Tensor& target_in, float dloss, Tensor* dpred, Tensor* dtarget) {
  check_pair(pred_in, target_in, "mse_backward");
  detail::check_grad(dpred, pred_in.shape(), "mse_backward", "dpred");
  detail::check_grad(dtarget, target_in.shape(), "mse_backward", "dtarget");
  const Tensor p = pred_in.contiguous(), t = target_in.contiguous();
  const float *pp = p.data<float>(), *tp = t.data<float>(), k = 2.0f * dloss / float(p.numel());
  float* dp = dpred ? dpred->data<float>() : nullptr;
  float* dt = dtarget ? dtarget->data<float>() : nullptr;
  parallel_for(p.numel(), 4096, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) {
      const float g = k * (pp[i] - tp[i]);
      if (dp) dp[i] += g;
      if (dt) dt[i] -= g;
    }
  });
}

namespace ref {

Tensor gaussian_sample(const Tensor& mean, const Tensor& logvar, const Tensor& noise) {
  check_pair(mean, logvar, "ref::gaussian_sample");
  check_pair(mean, noise, "ref::gaussian_sample");
  const std::vector<float> m = mean.to_vector(), l = logvar.to_vector(), e = noise.to_vector();
  Tensor y = Tensor::empty(mean.shape());
  for (size_t i = 0; i < m.size(); ++i)
    y.data<float>()[i] = float(m[i] + std::exp(0.5 * std::clamp(double(l[i]), -30.0, 20.0)) * e[i]);
  return y;
}

void gaussian_sample_backward(const Tensor& logvar, const Tensor& noise, const Tensor& dy, Tensor* dmean, Tensor* dlogvar) {
  check_pair(logvar, noise, "ref::gaussian_sample_backward");
  const std::vector<float> l = logvar.to_vector(), e = noise.to_vector(), g = dy.to_vector();
  for (size_t i = 0; i < l.size(); ++i) {
    if (dmean) dmean->data<float>()[i] += g[i];
    const bool inside = l[i] >= -30.0f && l[i] <= 20.0f;
    if (dlogvar && inside) dlogvar->data<float>()[i] += float(double(g[i]) * 0.5 * std::exp(0.5 * l[i]) * e[i]);
  }
}

float gaussian_kl(const Tensor& mean, const Tensor& logvar) {
  check_pair(mean, logvar, "ref::gaussian_kl");
  const std::vector<float> m = mean.to_vector(), l = logvar.to_vector();
  double s = 0;
  for (size_t i = 0; i < m.size(); ++i) {
    const double c = std::clamp(double(l[i]), -30.0, 20.0);
    s += 0.5 * (double(m[i]) * m[i] + std::exp(c) - 1.0 - c);
  }
  return float(s / double(m.size()));
}

void gaussian_kl_backward(const Tensor& mean, const Tensor& logvar, float dloss, Tensor* dmean, Tensor* dlogvar) {
  check_pair(mean, logvar, "ref::gaussian_kl_backward");
  const std::vector<float> m = mean.to_vector(), l = logvar.to_vector();
  const double k = double(dloss) / double(m.size());
  for (size_t i = 0; i < m.size(); ++i) {
    if (dmean) dmean->data<float>()[i] += float(k * m[i]);
    const bool inside = l[i] >= -30.0f && l[i] <= 20.0f;
    if (dlogvar && inside) dlogvar->data<float>()[i] += float(k * 0.5 * (std::exp(double(l[i])) - 1.0));
  }
}

Tensor timestep_embedding(const std::vector<float>& t, int64_t dim, float max_period) {
  check_embedding(t, dim, max_period, "ref::timestep_embedding");
  const int64_t half = dim / 2;
  Tensor y = Tensor::empty({int64_t(t.size()), dim});
  for (int64_t i = 0; i < int64_t(t.size()); ++i)
    for (int64_t j = 0; j < half; ++j) {
      const double a = double(t[size_t(i)]) * std::pow(double(max_period), -double(j) / double(half));
      y.at({i, j}) = float(std::cos(a)), y.at({i, half + j}) = float(std::sin(a));
    }
  return y;
}

float mse(const Tensor& pred, const Tensor& target) {
  check_pair(pred, target, "ref::mse");
  const std::vector<float> p = pred.to_vector(), t = target.to_vector();
  double s = 0;
  for (size_t i = 0; i < p.size(); ++i) s += (double(p[i]) - t[i]) * (double(p[i]) - t[i]);
  return float(s / double(p.size()));
}

void mse_backward(const Tensor& pred, const Tensor& target, float dloss, Tensor* dpred, Tensor* dtarget) {
  check_pair(pred, target, "ref::mse_backward");
  const std::vector<float> p = pred.to_vector(), t = target.to_vector();
  for (size_t i = 0; i < p.size(); ++i) {
    const double g = 2.0 * double(dloss) * (double(p[i]) - t[i]) / double(p.size());
    if (dpred) dpred->data<float>()[i] += float(g);
    if (dtarget) dtarget->data<float>()[i] -= float(g);
  }
}

}  // namespace ref
}  // namespace ocellus::ops
