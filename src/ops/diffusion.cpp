#include "ocellus/ops/diffusion.h"

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

}  // namespace

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
