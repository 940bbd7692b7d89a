// LlamaFusion's U-Net ends (gen/unet.h): a training step through the down-sampler, a stand-in for
// the language model and the up-sampler against PyTorch (float64), and inference against training.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/gen/unet.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/ops/elementwise.h"
#include "testutil.h"
#include "torch_ref.h"

using namespace ocellus;
using namespace ocellus::test;

TEST(UNet, TrainingStepMatchesPyTorchAndInferenceMatchesTraining) {
  gen::UNetConfig c;
  c.latent_channels = 2, c.latent_size = 4, c.block_out_channels = {8, 16}, c.norm_num_groups = 4, c.d_model = 12;
  std::vector<ag::Var> params;
  const gen::UNet<nn::Train> w = gen::load_unet(nn::new_param_maker(params, 3), c, "");
  perturb(params, 200);  // off their initial values (biases 0, norm weights 1 would hide a swap)
  const Tensor lat = randn({2, 4, 4, 2}, 1), target = randn({2, 4, 4, 2}, 2);
  const std::vector<float> t = {3.0f, 517.0f};
  const nn::Train f;
  const gen::UNetDown<nn::Train> d = gen::unet_down(f, c, w, ag::constant(lat), t);
  ASSERT_EQ(d.positions->value.shape(), Shape({2 * 4, 12}));  // a 2x2 grid per image
  const ag::Var noise = gen::unet_up(f, c, w, ag::activate(ops::Activation::Silu, d.positions), d);
  const ag::Var loss = ag::mse(noise, ag::constant(target));
  ag::Tape::current().backward(loss);

  const std::string dir = temp_path("unet_step");
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << nlohmann::json{{"latent_channels", 2}, {"latent_size", 4}, {"block_out_channels", {8, 16}},
                                                        {"norm_num_groups", 4}, {"d_model", 12}, {"timesteps", t}}.dump();
  io::write_safetensors(dir + "/model.safetensors", ag::named_values(params));
  const std::vector<float> ref =
      torch_ref({"unet", dir, write_temp("unet_lat.f32", lat), write_temp("unet_target.f32", target), ""}, dir + "/out.f32");
  expect_step_matches(loss, params, ref, 2e-6);  // worst gradient 1.1e-06

  const io::SafetensorsModel m = io::SafetensorsModel::open(dir);
  const gen::UNet<nn::Infer> wi = gen::load_unet(nn::file_maker(io::safetensors_source(m, dir), "unet"), c, "");
  const gen::UNetDown<nn::Infer> di = gen::unet_down(nn::Infer{}, c, wi, lat, t);
  EXPECT_LE(rel_err(di.positions, d.positions->value), 1e-6);
  EXPECT_LE(rel_err(gen::unet_up(nn::Infer{}, c, wi, ops::activate(ops::Activation::Silu, di.positions), di), noise->value), 1e-6);
  // Bad shapes and counts are errors naming what was expected.
  EXPECT_THROW(gen::unet_down(nn::Infer{}, c, wi, randn({2, 4, 4, 3}, 1), t), Error);
  EXPECT_THROW(gen::unet_down(nn::Infer{}, c, wi, lat, {1.0f}), Error);
  EXPECT_THROW(gen::unet_up(nn::Infer{}, c, wi, randn({8, 11}, 1), di), Error);
  c.latent_size = 5;
  EXPECT_THROW(c.validate("cfg"), Error);  // two levels need an even side
}
