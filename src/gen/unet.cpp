#include "ocellus/gen/unet.h"

#include <tuple>

#include "ocellus/core/error.h"
#include "ocellus/ops/diffusion.h"

namespace ocellus::gen {

void UNetConfig::validate(const std::string& where) const {
  const std::string p = where + ": unet: ";
  OCELLUS_CHECK(latent_channels >= 1 && latent_channels <= 64, p, "latent_channels ", latent_channels, " (1 to 64)");
  OCELLUS_CHECK(!block_out_channels.empty() && block_out_channels.size() <= 4, p, "block_out_channels needs 1 to 4 levels");
  OCELLUS_CHECK(norm_num_groups >= 1, p, "norm_num_groups ", norm_num_groups, " must be >= 1");
  for (int64_t ch : block_out_channels)
    OCELLUS_CHECK(ch >= 2 && ch <= 4096 && ch % norm_num_groups == 0 && ch % 2 == 0, p, "block_out_channels ", ch,
                  " must be an even positive multiple of norm_num_groups ", norm_num_groups);
  const int64_t step = int64_t(1) << (levels() - 1);
  OCELLUS_CHECK(latent_size >= step && latent_size % step == 0, p, "latent_size ", latent_size, " must be a multiple of ", step);
  OCELLUS_CHECK(d_model >= 1, p, "d_model ", d_model, " must be >= 1 (the language model's width)");
}

template <class F>
UNet<F> load_unet(const nn::Maker<F>& mk, const UNetConfig& c, const std::string& x) {
  c.validate("unet");
  UNet<F> w;
  const std::vector<int64_t>& ch = c.block_out_channels;
  const int64_t L = c.levels(), top = ch.back(), T = c.temb_dim(), z = c.latent_channels;
  std::tie(w.t1_w, w.t1_b) = nn::weight_and_bias(mk, x + "time_embedding.linear_1", {T, ch[0]});
  std::tie(w.t2_w, w.t2_b) = nn::weight_and_bias(mk, x + "time_embedding.linear_2", {T, T});
  std::tie(w.conv_in_w, w.conv_in_b) = nn::weight_and_bias(mk, x + "conv_in", {ch[0], 3, 3, z});
  for (int64_t i = 0; i < L; ++i) {
    const std::string b = x + "down_blocks." + std::to_string(i) + ".";
    w.down_res.push_back(load_res_block(mk, b + "resnets.0.", ch[size_t(i == 0 ? 0 : i - 1)], ch[size_t(i)], T));
    if (i + 1 < L) w.down.push_back(nn::weight_and_bias(mk, b + "downsamplers.0.conv", {ch[size_t(i)], 3, 3, ch[size_t(i)]}));
  }
  std::tie(w.proj_in_w, w.proj_in_b) = nn::weight_and_bias(mk, x + "proj_in", {c.d_model, top});
  std::tie(w.proj_out_w, w.proj_out_b) = nn::weight_and_bias(mk, x + "proj_out", {top, c.d_model});
  for (int64_t i = 0; i < L; ++i) {  // up block i works at level L - 1 - i: its input and the skip are that level's width
    const std::string b = x + "up_blocks." + std::to_string(i) + ".";
    const int64_t lvl = L - 1 - i, out = ch[size_t(lvl)];
    w.up_res.push_back(load_res_block(mk, b + "resnets.0.", 2 * out, out, T));
    if (lvl > 0) w.up.push_back(nn::weight_and_bias(mk, b + "upsamplers.0.conv", {ch[size_t(lvl - 1)], 3, 3, out}));
  }
  std::tie(w.norm_out_w, w.norm_out_b) = nn::weight_and_bias(mk, x + "conv_norm_out", {ch[0]});
  std::tie(w.conv_out_w, w.conv_out_b) = nn::weight_and_bias(mk, x + "conv_out", {z, 3, 3, ch[0]});
  return w;
}

template <class F>
UNetDown<F> unet_down(const F& f, const UNetConfig& c, const UNet<F>& w, const typename F::V& latents,
                      const std::vector<float>& timesteps) {
  const Shape& s = F::shape(latents);
  OCELLUS_CHECK(s.ndim == 4 && s[1] == c.latent_size && s[2] == c.latent_size && s[3] == c.latent_channels, "unet: latents of shape ",
                s.str(), ", the U-Net reads [B, ", c.latent_size, ", ", c.latent_size, ", ", c.latent_channels, "]");
  OCELLUS_CHECK(int64_t(timesteps.size()) == s[0], "unet: ", timesteps.size(), " timesteps for ", s[0], " latents");
  const ResParams rp{c.norm_num_groups, 1e-5f};  // diffusers' UNet2DModel GroupNorm epsilon
  UNetDown<F> d;
  const typename F::V te = F::constant(ops::timestep_embedding(timesteps, c.block_out_channels[0]));
  d.temb = f.linear(f.act(ops::Activation::Silu, f.linear(te, F::matrix(w.t1_w), w.t1_b)), F::matrix(w.t2_w), w.t2_b);
  typename F::V h = f.conv2d(latents, w.conv_in_w, w.conv_in_b, 1, 1);
  for (int64_t i = 0; i < c.levels(); ++i) {
    h = res_block(f, w.down_res[size_t(i)], h, rp, &d.temb);
    d.skips.push_back(h);
    if (i + 1 < c.levels()) h = f.conv2d(h, w.down[size_t(i)].first, w.down[size_t(i)].second, 2, 1);
  }
  const int64_t top = c.block_out_channels.back();
  d.positions = f.linear(f.reshape(h, {s[0] * c.n_positions(), top}), F::matrix(w.proj_in_w), w.proj_in_b);
  return d;
}

template <class F>
typename F::V unet_up(const F& f, const UNetConfig& c, const UNet<F>& w, const typename F::V& positions, const UNetDown<F>& d) {
  const int64_t B = F::shape(d.temb)[0], g = c.grid(), top = c.block_out_channels.back();
  OCELLUS_CHECK(F::shape(positions).ndim == 2 && F::shape(positions)[0] == B * c.n_positions() && F::shape(positions)[1] == c.d_model,
                "unet: positions of shape ", F::shape(positions).str(), ", the up-sampler reads [", B * c.n_positions(), ", ",
                c.d_model, "]");
  const ResParams rp{c.norm_num_groups, 1e-5f};
  typename F::V h = f.reshape(f.linear(positions, F::matrix(w.proj_out_w), w.proj_out_b), {B, g, g, top});
  for (int64_t i = 0; i < c.levels(); ++i) {
    const int64_t lvl = c.levels() - 1 - i;
    h = res_block(f, w.up_res[size_t(i)], f.concat({h, d.skips[size_t(lvl)]}, 3), rp, &d.temb);
    if (lvl > 0) h = f.conv2d(f.upsample2x(h), w.up[size_t(i)].first, w.up[size_t(i)].second, 1, 1);
  }
  return f.conv2d(norm_act(f, h, w.norm_out_w, w.norm_out_b, rp), w.conv_out_w, w.conv_out_b, 1, 1);
}

template UNet<nn::Infer> load_unet(const nn::Maker<nn::Infer>&, const UNetConfig&, const std::string&);
template UNet<nn::Train> load_unet(const nn::Maker<nn::Train>&, const UNetConfig&, const std::string&);
template UNetDown<nn::Infer> unet_down(const nn::Infer&, const UNetConfig&, const UNet<nn::Infer>&, const Tensor&,
                                       const std::vector<float>&);
template UNetDown<nn::Train> unet_down(const nn::Train&, const UNetConfig&, const UNet<nn::Train>&, const ag::Var&,
                                       const std::vector<float>&);
template Tensor unet_up(const nn::Infer&, const UNetConfig&, const UNet<nn::Infer>&, const Tensor&, const UNetDown<nn::Infer>&);
template ag::Var unet_up(const nn::Train&, const UNetConfig&, const UNet<nn::Train>&, const ag::Var&, const UNetDown<nn::Train>&);

}  // namespace ocellus::gen
