#pragma once
// The numeric pieces of denoising diffusion (DDPM, Ho et al. 2020) that a denoiser's training
// step needs beside the layers: the sinusoidal embedding of the timestep and the mean squared
// error of the predicted noise. f32; backward functions accumulate (+=) (null: not wanted).
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

namespace ref {
Tensor timestep_embedding(const std::vector<float>& t, int64_t dim, float max_period = 10000.0f);
float mse(const Tensor& pred, const Tensor& target);
void mse_backward(const Tensor& pred, const Tensor& target, float dloss, Tensor* dpred, Tensor* dtarget);
}  // namespace ref

}  // namespace ocellus::ops
