#pragma once
// The convolutional ResNet block of diffusion models' VAEs and U-Nets (Ho et al. 2020; diffusers'
// ResnetBlock2D), written once over the forward context (nn/forward.h) for inference and training:
//   h = conv3x3(SiLU(GroupNorm(x)));  h += time_emb_proj(SiLU(temb)) per channel (U-Net only);
//   h = conv3x3(SiLU(GroupNorm(h)));  out = shortcut(x) + h, shortcut a 1x1 convolution when the
//   widths differ. Feature maps are [B, H, W, C]; kernels [O, k, k, C].
#include <cstdint>
#include <string>
#include <tuple>

#include "ocellus/core/error.h"
#include "ocellus/nn/forward.h"

namespace ocellus::gen {

template <class F>
struct ResBlock {
  typename F::P norm1_w, norm1_b, conv1_w, conv1_b, norm2_w, norm2_b, conv2_w, conv2_b;
  typename F::P shortcut_w, shortcut_b;  // absent when in == out
  typename F::P temb_w, temb_b;          // [out, temb] (as a linear layer), absent without a timestep
};

struct ResParams {
  int64_t groups = 8;
  float eps = 1e-6f;  // diffusers' VAE and U-Net GroupNorm epsilon
};

// Under diffusers' names below prefix ("...resnets.0."): norm1, conv1, norm2, conv2, conv_shortcut,
// time_emb_proj (temb > 0).
template <class F>
ResBlock<F> load_res_block(const nn::Maker<F>& mk, const std::string& p, int64_t in, int64_t out, int64_t temb = 0) {
  ResBlock<F> b;
  std::tie(b.norm1_w, b.norm1_b) = nn::weight_and_bias(mk, p + "norm1", {in});
  std::tie(b.conv1_w, b.conv1_b) = nn::weight_and_bias(mk, p + "conv1", {out, 3, 3, in});
  if (temb > 0) std::tie(b.temb_w, b.temb_b) = nn::weight_and_bias(mk, p + "time_emb_proj", {out, temb});
  std::tie(b.norm2_w, b.norm2_b) = nn::weight_and_bias(mk, p + "norm2", {out});
  std::tie(b.conv2_w, b.conv2_b) = nn::weight_and_bias(mk, p + "conv2", {out, 3, 3, out});
  if (in != out) std::tie(b.shortcut_w, b.shortcut_b) = nn::weight_and_bias(mk, p + "conv_shortcut", {out, 1, 1, in});
  return b;
}

// SiLU(GroupNorm(x)): the pre-activation every convolution here reads.
template <class F>
typename F::V norm_act(const F& f, const typename F::V& x, const typename F::P& w, const typename F::P& b, const ResParams& p) {
  return f.act(ops::Activation::Silu, f.group_norm(x, w, b, p.groups, p.eps));
}

// x [B, H, W, in] -> [B, H, W, out]; temb [B, temb] (the timestep embedding) where the block has
// a projection for it.
template <class F>
typename F::V res_block(const F& f, const ResBlock<F>& b, const typename F::V& x, const ResParams& p,
                        const typename F::V* temb = nullptr) {
  typename F::V h = f.conv2d(norm_act(f, x, b.norm1_w, b.norm1_b, p), b.conv1_w, b.conv1_b, 1, 1);
  if (F::has(b.temb_w)) {
    OCELLUS_CHECK(temb, "res_block: the block has a timestep projection but no timestep embedding was given");
    const typename F::V t = f.linear(f.act(ops::Activation::Silu, *temb), F::matrix(b.temb_w), b.temb_b);  // [B, out]
    h = f.add(h, f.reshape(t, {F::shape(t)[0], 1, 1, F::shape(t)[1]}));
  }
  h = f.conv2d(norm_act(f, h, b.norm2_w, b.norm2_b, p), b.conv2_w, b.conv2_b, 1, 1);
  return f.add(F::has(b.shortcut_w) ? f.conv2d(x, b.shortcut_w, b.shortcut_b, 1, 0) : x, h);
}

}  // namespace ocellus::gen
