#pragma once
// The numeric pieces of latent diffusion that its training steps need beside the layers: the
// VAE's diagonal Gaussian posterior (the reparameterized sample and the KL divergence to N(0, I);
// Kingma & Welling 2014), the sinusoidal embedding of the timestep and the mean squared error of
// the predicted noise (DDPM, Ho et al. 2020). f32; backward functions accumulate (+=) (null: not
// wanted).
#include <cstdint>
#include <vector>

#include "ocellus/core/tensor.h"

namespace ocellus::ops {

// Sinusoidal timestep embedding as diffusers' UNet2DModel computes it (flip_sin_to_cos, no
// frequency shift): for t [n] -> [n, dim] (dim even), row i = [cos(t_i f_j), sin(t_i f_j)] over
// j < dim/2 with f_j = max_period^(-j / (dim/2)). Timesteps are inputs: no backward.
Tensor timestep_embedding(const std::vector<float>& t, int64_t dim, float max_period = 10000.0f);

// mean((pred - target)²) over all elements (shapes equal); backward: dpred += dloss · 2(pred -
// target) / n and dtarget -= the same.
float mse(const Tensor& pred, const Tensor& target);
void mse_backward(const Tensor& pred, const Tensor& target, float dloss, Tensor* dpred, Tensor* dtarget);

// The posterior's log-variance is clamped to [-30, 20] first, as diffusers' DiagonalGaussianDistribution
// does (its gradient is 0 where clamped).
constexpr float kLogvarMin = -30.0f, kLogvarMax = 20.0f;
// mean + exp(logvar / 2) · noise (shapes equal).
Tensor gaussian_sample(const Tensor& mean, const Tensor& logvar, const Tensor& noise);
void gaussian_sample_backward(const Tensor& logvar, const Tensor& noise, const Tensor& dy, Tensor* dmean, Tensor* dlogvar);
// KL(N(mean, exp(logvar)) || N(0, 1)) per element, averaged: mean of (mean² + exp(logvar) - 1 - logvar) / 2.
float gaussian_kl(const Tensor& mean, const Tensor& logvar);
void gaussian_kl_backward(const Tensor& mean, const Tensor& logvar, float dloss, Tensor* dmean, Tensor* dlogvar);

namespace ref {
Tensor gaussian_sample(const Tensor& mean, const Tensor& logvar, const Tensor& noise);
void gaussian_sample_backward(const Tensor& logvar, const Tensor& noise, const Tensor& dy, Tensor* dmean, Tensor* dlogvar);
float gaussian_kl(const Tensor& mean, const Tensor& logvar);
void gaussian_kl_backward(const Tensor& mean, const Tensor& logvar, float dloss, Tensor* dmean, Tensor* dlogvar);
Tensor timestep_embedding(const std::vector<float>& t, int64_t dim, float max_period = 10000.0f);
float mse(const Tensor& pred, const Tensor& target);
void mse_backward(const Tensor& pred, const Tensor& target, float dloss, Tensor* dpred, Tensor* dtarget);
}  // namespace ref

}  // namespace ocellus::ops
