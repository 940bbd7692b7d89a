// The VAE (gen/vae.h): one training step's loss and every gradient against a PyTorch
// re-statement (float64), inference's encoder and decoder against training's forward on the same
// weights, and its config's checks.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ocellus/core/error.h"
#include "ocellus/gen/vae.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/ops/elementwise.h"
#include "testutil.h"
#include "torch_ref.h"

using namespace ocellus;
using namespace ocellus::test;

namespace {

gen::VaeConfig tiny_vae() {
  gen::VaeConfig c;
  c.in_channels = 1, c.latent_channels = 2, c.block_out_channels = {8, 16}, c.norm_num_groups = 4, c.sample_size = 8;
  return c;
}

}  // namespace

TEST(Vae, TrainingStepMatchesPyTorchAndInferenceForwardMatchesTraining) {
  const gen::VaeConfig c = tiny_vae();
  std::vector<ag::Var> params;
  const gen::Vae<nn::Train> w = gen::load_vae(nn::new_param_maker(params, 7), c);
  // Every parameter moved off its initial value (biases 0, norm weights 1 would hide a swap).
  perturb(params, 100);  // off their initial values (biases 0, norm weights 1 would hide a swap)
  const Tensor images = randn({2, 8, 8, 1}, 1), noise = randn({2, 4, 4, 2}, 2);
  float recon = 0, kl = 0;
  const ag::Var loss = gen::vae_loss(c, w, images, noise, 0.5f, &recon, &kl);
  EXPECT_NEAR(loss->value.at({0}), recon + 0.5f * kl, 1e-6);
  ag::Tape::current().backward(loss);

  const std::string dir = temp_path("vae_step");
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << gen::vae_config_json(c);
  io::write_safetensors(dir + "/model.safetensors", ag::named_values(params));
  const std::vector<float> ref = torch_ref(
      {"vae", dir, write_temp("vae_images.f32", images), write_temp("vae_noise.f32", noise), "0.5", ""}, dir + "/out.f32");
  expect_step_matches(loss, params, ref, 2e-6);  // worst gradient 9.4e-07

  // Inference reads the saved file and computes what training computed.
  const io::SafetensorsModel m = io::SafetensorsModel::open(dir);
  const gen::Vae<nn::Infer> wi = gen::load_vae(nn::file_maker(io::safetensors_source(m, dir), "vae"), c);
  const ag::NoGrad no_grad;
  const Tensor moments = gen::vae_encode(nn::Infer{}, c, wi, images);
  EXPECT_LE(rel_err(moments, gen::vae_encode(nn::Train{}, c, w, ag::constant(images))->value), 1e-6);
  const Tensor z = moments.slice(3, 0, 2).contiguous();
  EXPECT_LE(rel_err(gen::vae_decode(nn::Infer{}, c, wi, z), gen::vae_decode(nn::Train{}, c, w, ag::constant(z))->value), 1e-6);
}

TEST(Vae, ConfigRoundTripsAndBadConfigsAreRefusedByName) {
  gen::VaeConfig c = tiny_vae();
  c.scaling_factor = 0.75;
  const gen::VaeConfig back = gen::parse_vae_config(gen::vae_config_json(c), "vae.json");
  EXPECT_EQ(back.block_out_channels, c.block_out_channels);
  EXPECT_EQ(back.latent_channels, 2);
  EXPECT_EQ(back.sample_size, 8);
  EXPECT_DOUBLE_EQ(back.scaling_factor, 0.75);
  EXPECT_EQ(back.latent_size(), 4);
  auto err = [](const std::string& j) { return error_of([&] { gen::parse_vae_config(j, "vae.json"); }); };
  EXPECT_NE(err(R"({"layers_per_block": 2})").find("layers_per_block"), std::string::npos);
  EXPECT_NE(err(R"({"mid_block_add_attention": true})").find("mid_block_add_attention"), std::string::npos);
  EXPECT_NE(err(R"({"block_out_channels": [30, 64]})").find("norm_num_groups"), std::string::npos);
  EXPECT_NE(err(R"({"sample_size": 54})").find("sample_size"), std::string::npos);
  EXPECT_NE(err(R"({"latent_channels": "4"})").find("latent_channels"), std::string::npos);
  EXPECT_NE(err("[1]").find("vae.json"), std::string::npos);
  // Wrong input shapes are errors naming the expected shape.
  std::vector<ag::Var> params;
  const gen::Vae<nn::Train> w = gen::load_vae(nn::new_param_maker(params, 1), c);
  EXPECT_THROW(gen::vae_encode(nn::Train{}, c, w, ag::constant(randn({1, 8, 8, 3}, 1))), Error);
  EXPECT_THROW(gen::vae_decode(nn::Train{}, c, w, ag::constant(randn({1, 8, 8, 2}, 1))), Error);
}
