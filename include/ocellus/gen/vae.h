#pragma once
// The small VAE of LlamaFusion's image side (Rombach et al. 2022's KL autoencoder, laid out as
// diffusers' AutoencoderKL with one ResNet block per level and no attention): it maps a scene to
// a latent a few times smaller on each side, on which diffusion runs, and a latent back to
// pixels. Written once over the forward context (nn/forward.h): training (nn::Train) and
// encoding / decoding (nn::Infer) run the same code.
//   encoder: conv_in; per level a ResNet block to its width, then (all but the last) a 3x3
//            stride-2 convolution; a mid ResNet block; GroupNorm, SiLU, conv_out to 2·latent
//            channels (mean, then log-variance).
//   decoder: conv_in from the latent; a mid ResNet block; per level, widest first, a ResNet block
//            to its width, then (all but the last) nearest up-sampling and a 3x3 convolution;
//            GroupNorm, SiLU, conv_out to the image's channels.
// Images are [B, S, S, C] in [-1, 1]; latents [B, S / 2^(levels-1), ..., latent_channels].
#include <cstdint>
#include <string>
#include <vector>

#include "ocellus/gen/resnet.h"

namespace ocellus::gen {

struct VaeConfig {
  int64_t in_channels = 1;                           // 1: grayscale scenes
  int64_t latent_channels = 4;
  std::vector<int64_t> block_out_channels = {32, 64, 64};
  int64_t norm_num_groups = 8;
  int64_t sample_size = 56;                          // image side
  // Latents are multiplied by it before diffusion and divided after (diffusers' convention, set
  // from the trained encoder's latents so that they have unit variance).
  double scaling_factor = 1.0;

  int64_t levels() const { return int64_t(block_out_channels.size()); }
  int64_t latent_size() const { return sample_size >> (levels() - 1); }
  // Throws naming `where` and the field.
  void validate(const std::string& where) const;
};

// diffusers' AutoencoderKL config.json (the keys this layout uses; a key with another value than
// this layout has, e.g. layers_per_block 2 or mid-block attention, is refused by name).
VaeConfig parse_vae_config(const std::string& json_text, const std::string& where);
std::string vae_config_json(const VaeConfig& c);

template <class F>
struct Vae {
  using P = typename F::P;
  P enc_in_w, enc_in_b, enc_norm_w, enc_norm_b, enc_out_w, enc_out_b;
  std::vector<ResBlock<F>> enc_res;
  std::vector<std::pair<P, P>> enc_down;  // levels - 1
  ResBlock<F> enc_mid, dec_mid;
  P dec_in_w, dec_in_b, dec_norm_w, dec_norm_b, dec_out_w, dec_out_b;
  std::vector<ResBlock<F>> dec_res;       // widest level first
  std::vector<std::pair<P, P>> dec_up;    // levels - 1
};

template <class F>
Vae<F> load_vae(const nn::Maker<F>& mk, const VaeConfig& c);

// images [B, S, S, C] -> the posterior's moments [B, h, h, 2·latent] (mean, then log-variance).
template <class F>
typename F::V vae_encode(const F& f, const VaeConfig& c, const Vae<F>& w, const typename F::V& images);
// images [B, S, S, C] -> the latents diffusion runs on: the posterior's mean times scaling_factor.
Tensor vae_latents(const VaeConfig& c, const Vae<nn::Infer>& w, const Tensor& images);
// latents [B, h, h, latent] -> images [B, S, S, C].
template <class F>
typename F::V vae_decode(const F& f, const VaeConfig& c, const Vae<F>& w, const typename F::V& latents);

// The VAE's training loss of a batch of images [B, S, S, C]: the reconstruction's MSE against
// them, decoded from the posterior's reparameterized sample (noise [B, h, h, latent], standard
// normal), plus kl_weight times the posterior's KL to N(0, I) per latent element. The two terms'
// values go to *recon and *kl when given.
ag::Var vae_loss(const VaeConfig& c, const Vae<nn::Train>& w, const Tensor& images, const Tensor& noise, float kl_weight,
                 float* recon = nullptr, float* kl = nullptr);

}  // namespace ocellus::gen
