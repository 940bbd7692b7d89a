#include "ocellus/gen/scheduler.h"

#include <cmath>

#include "ocellus/core/error.h"

namespace ocellus::gen {

NoiseSchedule::NoiseSchedule(int64_t T, double beta_start, double beta_end) {
  OCELLUS_CHECK(T >= 1 && T <= 100000, "diffusion: ", T, " training steps (1 to 100000)");
  OCELLUS_CHECK(beta_start > 0 && beta_end >= beta_start && beta_end < 1, "diffusion: betas ", beta_start, " .. ", beta_end,
                " must satisfy 0 < start <= end < 1");
  double a = 1.0;
  for (int64_t t = 0; t < T; ++t) {
    const double beta = T == 1 ? beta_start : beta_start + (beta_end - beta_start) * double(t) / double(T - 1);
    a *= 1.0 - beta;
    abar_.push_back(a);
  }
}

double NoiseSchedule::alpha_bar(int64_t t) const {
  OCELLUS_CHECK(t >= -1 && t < train_steps(), "diffusion: timestep ", t, " outside [0, ", train_steps(), ")");
  return t < 0 ? 1.0 : abar_[size_t(t)];
}

namespace {

void check_pair(const Tensor& a, const Tensor& b, const char* what) {
  OCELLUS_CHECK(a.dtype() == DType::F32 && b.dtype() == DType::F32 && a.shape() == b.shape(), "diffusion: ", what, ": shapes ",
                a.shape().str(), " and ", b.shape().str(), " must be equal (f32)");
}

// out = p · a + q · b, element-wise (contiguous copies).
Tensor combine(const Tensor& a_in, double p, const Tensor& b_in, double q) {
  const Tensor a = a_in.contiguous(), b = b_in.contiguous();
  Tensor out = Tensor::empty(a.shape());
  for (int64_t i = 0; i < a.numel(); ++i)
    out.data<float>()[i] = float(p * a.data<float>()[i] + q * b.data<float>()[i]);
  return out;
}

}  // namespace

Tensor NoiseSchedule::add_noise(const Tensor& x0_in, const Tensor& noise_in, const std::vector<int64_t>& t) const {
  check_pair(x0_in, noise_in, "add_noise");
  OCELLUS_CHECK(x0_in.ndim() >= 1 && int64_t(t.size()) == x0_in.dim(0), "diffusion: ", t.size(), " timesteps for ", x0_in.dim(0),
                " images");
  const Tensor x0 = x0_in.contiguous(), noise = noise_in.contiguous();
  Tensor out = Tensor::empty(x0.shape());
  const int64_t per = x0.numel() / x0.dim(0);
  for (int64_t b = 0; b < x0.dim(0); ++b) {
    OCELLUS_CHECK(t[size_t(b)] >= 0, "diffusion: timestep ", t[size_t(b)], " is negative");
    const double a = alpha_bar(t[size_t(b)]), p = std::sqrt(a), q = std::sqrt(1.0 - a);
    for (int64_t i = b * per; i < (b + 1) * per; ++i)
      out.data<float>()[i] = float(p * x0.data<float>()[i] + q * noise.data<float>()[i]);
  }
  return out;
}

std::vector<int64_t> NoiseSchedule::sampling_steps(int64_t n) const {
  OCELLUS_CHECK(n >= 1 && n <= train_steps(), "diffusion: ", n, " sampling steps (1 to ", train_steps(), ")");
  const int64_t ratio = train_steps() / n;
  std::vector<int64_t> steps;
  for (int64_t i = n - 1; i >= 0; --i) steps.push_back(i * ratio);
  return steps;
}

Tensor NoiseSchedule::ddim_step(const Tensor& x_t, const Tensor& eps, int64_t t, int64_t t_prev) const {
  check_pair(x_t, eps, "ddim_step");
  OCELLUS_CHECK(t_prev < t, "diffusion: a step from ", t, " to ", t_prev, " goes backwards");
  const double a = alpha_bar(t), ap = alpha_bar(t_prev);
  // x_0 = (x_t - sqrt(1 - ᾱ_t) ε) / sqrt(ᾱ_t);  x_prev = sqrt(ᾱ_prev) x_0 + sqrt(1 - ᾱ_prev) ε.
  const double p = std::sqrt(ap / a), q = std::sqrt(1.0 - ap) - std::sqrt(ap * (1.0 - a) / a);
  return combine(x_t, p, eps, q);
}

Tensor NoiseSchedule::ddpm_step(const Tensor& x_t, const Tensor& eps, int64_t t, int64_t t_prev, const Tensor& z) const {
  check_pair(x_t, eps, "ddpm_step");
  OCELLUS_CHECK(t_prev < t, "diffusion: a step from ", t, " to ", t_prev, " goes backwards");
  const double a = alpha_bar(t), ap = alpha_bar(t_prev), alpha = a / ap, beta = 1.0 - alpha;
  // The posterior mean from the predicted x_0: (sqrt(ᾱ_prev) β / (1 - ᾱ_t)) x_0 + (sqrt(α) (1 - ᾱ_prev) / (1 - ᾱ_t)) x_t.
  const double c0 = std::sqrt(ap) * beta / (1.0 - a), ct = std::sqrt(alpha) * (1.0 - ap) / (1.0 - a);
  const double p = c0 / std::sqrt(a) + ct, q = -c0 * std::sqrt(1.0 - a) / std::sqrt(a);
  Tensor mean = combine(x_t, p, eps, q);
  if (t_prev < 0) return mean;
  check_pair(x_t, z, "ddpm_step");
  const double var = std::max((1.0 - ap) / (1.0 - a) * beta, 1e-20);
  return combine(mean, 1.0, z, std::sqrt(var));
}

Tensor guide(const Tensor& cond, const Tensor& uncond, float scale) {
  check_pair(cond, uncond, "guidance");
  return combine(uncond, 1.0 - double(scale), cond, double(scale));
}

}  // namespace ocellus::gen
