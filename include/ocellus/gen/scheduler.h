#pragma once
// Denoising diffusion's noise schedule and samplers (Ho et al. 2020, DDPM; Song et al. 2021,
// DDIM), with diffusers' DDPMScheduler / DDIMScheduler conventions: a linear beta schedule over
// T training steps, ᾱ_t = Π_{s<=t} (1 - β_s), x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε, the model
// predicting ε. Sampling with n steps visits t = (n-1)·T/n, ..., T/n, 0 ("leading" spacing); the
// step before t = 0 lands on ᾱ = 1 (set_alpha_to_one). No clipping of the predicted x_0
// (latents are not bounded to [-1, 1]).
#include <cstdint>
#include <vector>

#include "ocellus/core/tensor.h"

namespace ocellus::gen {

class NoiseSchedule {
 public:
  explicit NoiseSchedule(int64_t train_steps = 1000, double beta_start = 1e-4, double beta_end = 0.02);
  int64_t train_steps() const { return int64_t(abar_.size()); }
  // ᾱ_t for t in [0, T); t = -1 (before the first step): 1.
  double alpha_bar(int64_t t) const;
  // x_t of each image of x0 [B, ...] at its own timestep.
  Tensor add_noise(const Tensor& x0, const Tensor& noise, const std::vector<int64_t>& t) const;
  // The timesteps a sampler of n steps visits, from the noisiest (1 <= n <= T).
  std::vector<int64_t> sampling_steps(int64_t n) const;
  // One step from x_t at t to t_prev (t_prev < t; -1 after the last) given the predicted noise.
  // DDIM (η = 0): deterministic. DDPM: the posterior mean plus sqrt(β̃) · z (z standard normal,
  // unused at the last step), β̃ = (1 - ᾱ_prev) / (1 - ᾱ_t) · (1 - ᾱ_t / ᾱ_prev).
  Tensor ddim_step(const Tensor& x_t, const Tensor& eps, int64_t t, int64_t t_prev) const;
  Tensor ddpm_step(const Tensor& x_t, const Tensor& eps, int64_t t, int64_t t_prev, const Tensor& z) const;

 private:
  std::vector<double> abar_;
};

// Classifier-free guidance (Ho & Salimans 2022): eps_uncond + scale · (eps_cond - eps_uncond).
Tensor guide(const Tensor& eps_cond, const Tensor& eps_uncond, float scale);

}  // namespace ocellus::gen
