#pragma once
// LlamaFusion's image ends (Shi et al. 2024, after Transfusion): a U-Net down-sampler turns a
// noisy latent and its diffusion timestep into the image's positions at the language model's
// width, and a mirrored up-sampler turns what the model made of those positions back into the
// predicted noise, with the down-sampler's feature maps as skip connections. Written once over
// the forward context (nn/forward.h).
//   timestep:  t -> sinusoidal embedding (width c0) -> linear_1 -> SiLU -> linear_2 (width 4·c0)
//   down:      conv_in (latent -> c0); per level a ResNet block (with the timestep) to its width,
//              kept as a skip, then (all but the last) a 3x3 stride-2 convolution; the last level's
//              pixels, one position each, through proj_in to the model's width.
//   up:        proj_out back to the last width; per level, last first, the skip concatenated on
//              the channels, a ResNet block (with the timestep) to the level's width, then (all
//              but the first level) nearest up-sampling and a 3x3 convolution; GroupNorm, SiLU,
//              conv_out to the latent's channels.
// Latents are [B, h, h, latent]; positions [B · n_positions, d_model], image by image, row-major.
#include <cstdint>
#include <string>
#include <vector>

#include "ocellus/gen/resnet.h"

namespace ocellus::gen {

struct UNetConfig {
  int64_t latent_channels = 4, latent_size = 14;
  std::vector<int64_t> block_out_channels = {64, 128};
  int64_t norm_num_groups = 8;
  int64_t d_model = 0;  // the language model's width

  int64_t levels() const { return int64_t(block_out_channels.size()); }
  int64_t temb_dim() const { return 4 * block_out_channels[0]; }
  int64_t grid() const { return latent_size >> (levels() - 1); }  // positions per side
  int64_t n_positions() const { return grid() * grid(); }
  void validate(const std::string& where) const;
};

template <class F>
struct UNet {
  using P = typename F::P;
  P t1_w, t1_b, t2_w, t2_b;                 // timestep MLP (linear layers [out, in])
  P conv_in_w, conv_in_b, proj_in_w, proj_in_b, proj_out_w, proj_out_b;
  std::vector<ResBlock<F>> down_res, up_res;  // up_res: last level first
  std::vector<std::pair<P, P>> down, up;      // levels - 1 each
  P norm_out_w, norm_out_b, conv_out_w, conv_out_b;
};

// Tensor names under `prefix` (e.g. "image_io."), diffusers' UNet2DModel names where it has them.
template <class F>
UNet<F> load_unet(const nn::Maker<F>& mk, const UNetConfig& c, const std::string& prefix);

// What the down-sampler hands the model and keeps for the up-sampler.
template <class F>
struct UNetDown {
  typename F::V positions;           // [B · n_positions, d_model]
  typename F::V temb;                // [B, temb_dim]
  std::vector<typename F::V> skips;  // one per level: [B, side, side, width]
};

// latents [B, h, h, latent] (noisy), timesteps: one per image.
template <class F>
UNetDown<F> unet_down(const F& f, const UNetConfig& c, const UNet<F>& w, const typename F::V& latents,
                      const std::vector<float>& timesteps);
// The model's outputs at the image's positions [B · n_positions, d_model] -> noise [B, h, h, latent].
template <class F>
typename F::V unet_up(const F& f, const UNetConfig& c, const UNet<F>& w, const typename F::V& positions, const UNetDown<F>& down);

}  // namespace ocellus::gen
