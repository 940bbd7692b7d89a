#include "ocellus/gen/vae.h"

#include <cmath>
#include <tuple>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/io/json.h"
#include "ocellus/ops/elementwise.h"

namespace ocellus::gen {

using json = nlohmann::json;

void VaeConfig::validate(const std::string& where) const {
  const std::string p = where + ": vae: ";
  OCELLUS_CHECK(in_channels >= 1 && in_channels <= 4, p, "in_channels ", in_channels, " (1 to 4)");
  OCELLUS_CHECK(latent_channels >= 1 && latent_channels <= 64, p, "latent_channels ", latent_channels, " (1 to 64)");
  OCELLUS_CHECK(!block_out_channels.empty() && block_out_channels.size() <= 6, p, "block_out_channels needs 1 to 6 levels");
  OCELLUS_CHECK(norm_num_groups >= 1, p, "norm_num_groups ", norm_num_groups, " must be >= 1");
  for (int64_t ch : block_out_channels)
    OCELLUS_CHECK(ch >= 1 && ch <= 4096 && ch % norm_num_groups == 0, p, "block_out_channels ", ch,
                  " must be a positive multiple of norm_num_groups ", norm_num_groups);
  const int64_t step = int64_t(1) << (levels() - 1);
  OCELLUS_CHECK(sample_size >= step && sample_size <= 4096 && sample_size % step == 0, p, "sample_size ", sample_size,
                " must be a multiple of ", step, " (", levels() - 1, " halvings)");
  OCELLUS_CHECK(scaling_factor > 0 && std::isfinite(scaling_factor), p, "scaling_factor ", scaling_factor, " must be > 0");
}

VaeConfig parse_vae_config(const std::string& text, const std::string& where) {
  const json j = io::parse_json(text, where, "vae config");
  OCELLUS_CHECK(j.is_object(), where, ": vae config: not a JSON object");
  VaeConfig c;
  auto integer = [&](const char* k, int64_t& v) {
    if (!j.contains(k)) return;
    OCELLUS_CHECK(j[k].is_number_integer(), where, ": vae config: '", k, "' must be an integer");
    v = j[k].get<int64_t>();
  };
  integer("in_channels", c.in_channels), integer("latent_channels", c.latent_channels);
  integer("norm_num_groups", c.norm_num_groups), integer("sample_size", c.sample_size);
  int64_t out_channels = c.in_channels, layers = 1;
  integer("out_channels", out_channels), integer("layers_per_block", layers);
  OCELLUS_CHECK(out_channels == c.in_channels, where, ": vae config: out_channels ", out_channels, " differs from in_channels ",
                c.in_channels, " (ocellus's VAE reconstructs its input)");
  OCELLUS_CHECK(layers == 1, where, ": vae config: layers_per_block ", layers, " (ocellus's VAE has one ResNet block per level)");
  OCELLUS_CHECK(!j.value("mid_block_add_attention", false), where,
                ": vae config: mid_block_add_attention (ocellus's VAE has no attention)");
  if (j.contains("block_out_channels")) {
    OCELLUS_CHECK(j["block_out_channels"].is_array(), where, ": vae config: 'block_out_channels' must be a list of integers");
    c.block_out_channels.clear();
    for (const json& v : j["block_out_channels"]) {
      OCELLUS_CHECK(v.is_number_integer(), where, ": vae config: 'block_out_channels' must be a list of integers");
      c.block_out_channels.push_back(v.get<int64_t>());
    }
  }
  if (j.contains("scaling_factor")) {
    OCELLUS_CHECK(j["scaling_factor"].is_number(), where, ": vae config: 'scaling_factor' must be a number");
    c.scaling_factor = j["scaling_factor"].get<double>();
  }
  c.validate(where);
  return c;
}

std::string vae_config_json(const VaeConfig& c) {
  json j = {{"_class_name", "AutoencoderKL"}, {"in_channels", c.in_channels}, {"out_channels", c.in_channels},
            {"latent_channels", c.latent_channels}, {"block_out_channels", c.block_out_channels},
            {"layers_per_block", 1}, {"norm_num_groups", c.norm_num_groups}, {"sample_size", c.sample_size},
            {"act_fn", "silu"}, {"mid_block_add_attention", false}, {"scaling_factor", c.scaling_factor},
            {"ocellus_layout", "kernels [out, k, k, in], feature maps channels last"}};
  return j.dump(2) + "\n";
}

template <class F>
Vae<F> load_vae(const nn::Maker<F>& mk, const VaeConfig& c) {
  Vae<F> w;
  const std::vector<int64_t>& ch = c.block_out_channels;
  const int64_t L = c.levels(), top = ch.back(), z = c.latent_channels;
  std::tie(w.enc_in_w, w.enc_in_b) = nn::weight_and_bias(mk, "encoder.conv_in", {ch[0], 3, 3, c.in_channels});
  for (int64_t i = 0; i < L; ++i) {
    const std::string b = "encoder.down_blocks." + std::to_string(i) + ".";
    w.enc_res.push_back(load_res_block(mk, b + "resnets.0.", ch[size_t(i == 0 ? 0 : i - 1)], ch[size_t(i)]));
    if (i + 1 < L) w.enc_down.push_back(nn::weight_and_bias(mk, b + "downsamplers.0.conv", {ch[size_t(i)], 3, 3, ch[size_t(i)]}));
  }
  w.enc_mid = load_res_block(mk, "encoder.mid_block.resnets.0.", top, top);
  w.enc_norm_w = mk.tensor("encoder.conv_norm_out.weight", {top}, true), w.enc_norm_b = mk.tensor("encoder.conv_norm_out.bias", {top}, true);
  std::tie(w.enc_out_w, w.enc_out_b) = nn::weight_and_bias(mk, "encoder.conv_out", {2 * z, 3, 3, top});

  std::tie(w.dec_in_w, w.dec_in_b) = nn::weight_and_bias(mk, "decoder.conv_in", {top, 3, 3, z});
  w.dec_mid = load_res_block(mk, "decoder.mid_block.resnets.0.", top, top);
  for (int64_t i = 0; i < L; ++i) {  // up block i works at level L - 1 - i
    const std::string b = "decoder.up_blocks." + std::to_string(i) + ".";
    const int64_t out = ch[size_t(L - 1 - i)], in = i == 0 ? top : ch[size_t(L - i)];
    w.dec_res.push_back(load_res_block(mk, b + "resnets.0.", in, out));
    if (i + 1 < L) w.dec_up.push_back(nn::weight_and_bias(mk, b + "upsamplers.0.conv", {out, 3, 3, out}));
  }
  w.dec_norm_w = mk.tensor("decoder.conv_norm_out.weight", {ch[0]}, true), w.dec_norm_b = mk.tensor("decoder.conv_norm_out.bias", {ch[0]}, true);
  std::tie(w.dec_out_w, w.dec_out_b) = nn::weight_and_bias(mk, "decoder.conv_out", {c.in_channels, 3, 3, ch[0]});
  return w;
}

template <class F>
typename F::V vae_encode(const F& f, const VaeConfig& c, const Vae<F>& w, const typename F::V& images) {
  const Shape& s = F::shape(images);
  OCELLUS_CHECK(s.ndim == 4 && s[1] == c.sample_size && s[2] == c.sample_size && s[3] == c.in_channels, "vae: images of shape ",
                s.str(), ", the VAE reads [B, ", c.sample_size, ", ", c.sample_size, ", ", c.in_channels, "]");
  const ResParams rp{c.norm_num_groups, 1e-6f};
  typename F::V h = f.conv2d(images, w.enc_in_w, w.enc_in_b, 1, 1);
  for (int64_t i = 0; i < c.levels(); ++i) {
    h = res_block(f, w.enc_res[size_t(i)], h, rp);
    if (i + 1 < c.levels()) h = f.conv2d(h, w.enc_down[size_t(i)].first, w.enc_down[size_t(i)].second, 2, 1);
  }
  h = res_block(f, w.enc_mid, h, rp);
  return f.conv2d(norm_act(f, h, w.enc_norm_w, w.enc_norm_b, rp), w.enc_out_w, w.enc_out_b, 1, 1);
}

template <class F>
typename F::V vae_decode(const F& f, const VaeConfig& c, const Vae<F>& w, const typename F::V& latents) {
  const Shape& s = F::shape(latents);
  const int64_t h0 = c.latent_size();
  OCELLUS_CHECK(s.ndim == 4 && s[1] == h0 && s[2] == h0 && s[3] == c.latent_channels, "vae: latents of shape ", s.str(),
                ", the VAE reads [B, ", h0, ", ", h0, ", ", c.latent_channels, "]");
  const ResParams rp{c.norm_num_groups, 1e-6f};
  typename F::V h = res_block(f, w.dec_mid, f.conv2d(latents, w.dec_in_w, w.dec_in_b, 1, 1), rp);
  for (int64_t i = 0; i < c.levels(); ++i) {
    h = res_block(f, w.dec_res[size_t(i)], h, rp);
    if (i + 1 < c.levels()) h = f.conv2d(f.upsample2x(h), w.dec_up[size_t(i)].first, w.dec_up[size_t(i)].second, 1, 1);
  }
  return f.conv2d(norm_act(f, h, w.dec_norm_w, w.dec_norm_b, rp), w.dec_out_w, w.dec_out_b, 1, 1);
}

ag::Var vae_loss(const VaeConfig& c, const Vae<nn::Train>& w, const Tensor& images, const Tensor& noise, float kl_weight,
                 float* recon, float* kl) {
  const nn::Train f;
  const ag::Var x = ag::constant(images);
  const ag::Var moments = vae_encode(f, c, w, x);
  const int64_t z = c.latent_channels;
  const ag::Var mean = ag::slice(moments, 3, 0, z), logvar = ag::slice(moments, 3, z, 2 * z);
  const ag::Var r = ag::mse(vae_decode(f, c, w, ag::gaussian_sample(mean, logvar, noise)), x);
  const ag::Var k = ag::gaussian_kl(mean, logvar);
  if (recon) *recon = r->value.data<float>()[0];
  if (kl) *kl = k->value.data<float>()[0];
  return ag::add(r, ag::scale(k, kl_weight));
}

Tensor vae_latents(const VaeConfig& c, const Vae<nn::Infer>& w, const Tensor& images) {
  const Tensor m = vae_encode(nn::Infer{}, c, w, images);
  return ops::scale(m.slice(3, 0, c.latent_channels).contiguous(), float(c.scaling_factor));
}

template Vae<nn::Infer> load_vae(const nn::Maker<nn::Infer>&, const VaeConfig&);
template Vae<nn::Train> load_vae(const nn::Maker<nn::Train>&, const VaeConfig&);
template Tensor vae_encode(const nn::Infer&, const VaeConfig&, const Vae<nn::Infer>&, const Tensor&);
template ag::Var vae_encode(const nn::Train&, const VaeConfig&, const Vae<nn::Train>&, const ag::Var&);
template Tensor vae_decode(const nn::Infer&, const VaeConfig&, const Vae<nn::Infer>&, const Tensor&);
template ag::Var vae_decode(const nn::Train&, const VaeConfig&, const Vae<nn::Train>&, const ag::Var&);

}  // namespace ocellus::gen
