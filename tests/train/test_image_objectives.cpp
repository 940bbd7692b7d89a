// The objectives that train an image model from scratch through `ocellus train`: a VAE on the
// images of LLaVA records and a CNN classifier on IDX photos; their recipes' checks.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/gen/vae.h"
#include "ocellus/io/file.h"
#include "ocellus/io/image.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/train/trainer.h"
#include "ocellus/vision/cnn_classifier.h"
#include "testutil.h"

using namespace ocellus;
using namespace ocellus::test;
using nlohmann::json;

namespace {

// 16 8x8 grayscale images: a bright square in one of the four quadrants on a dark ground.
std::string write_images(const std::string& root) {
  std::filesystem::create_directories(root + "/img");
  json records = json::array();
  for (int i = 0; i < 16; ++i) {
    io::ImageRgb8 img;
    img.width = img.height = 8;
    img.rgb.assign(8 * 8 * 3, 20);
    const int qy = (i / 2) % 2 * 4, qx = i % 2 * 4;
    for (int y = qy; y < qy + 4; ++y)
      for (int x = qx; x < qx + 4; ++x)
        for (int c = 0; c < 3; ++c) img.rgb[size_t((y * 8 + x) * 3 + c)] = uint8_t(200 + i);
    const std::string name = std::to_string(i) + ".png";
    io::save_png(root + "/img/" + name, img);
    records.push_back({{"id", std::to_string(i)}, {"image", name},
                       {"conversations", {{{"from", "human"}, {"value", "<image>\nDescribe."}}, {{"from", "gpt"}, {"value", "a square"}}}}});
  }
  std::ofstream(root + "/data.json") << records.dump();
  return root + "/data.json";
}

std::string write_recipe(const std::string& path, const json& j) {
  std::ofstream(path) << j.dump(2);
  return path;
}

}  // namespace

TEST(ImageObjectives, VaeTrainsFromScratchAndExportsALoadableFolder) {
  const std::string root = temp_path("vae_train");
  std::filesystem::remove_all(root);
  const std::string data = write_images(root);
  const json recipe = {{"objective", "vae"}, {"data", data}, {"images", root + "/img"}, {"out", root + "/out"},
                       {"model", {{"block_out_channels", {8, 16}}, {"latent_channels", 2}, {"norm_num_groups", 4}, {"sample_size", 8}}},
                       {"kl_weight", 1e-3}, {"lr", 3e-3}, {"steps", 40}, {"batch", 8}, {"seed", 3}};
  const train::TrainResult r = train::run_recipe(train::read_recipe(write_recipe(root + "/vae.json", recipe)), train::Start::Fresh);
  ASSERT_EQ(r.losses.size(), 40u);
  const double first = (r.losses[0] + r.losses[1]) / 2, last = (r.losses[38] + r.losses[39]) / 2;
  EXPECT_LT(last, 0.5 * first) << "first " << first << ", last " << last;
  // The folder loads for inference and reconstructs a training image better than its mean does.
  const gen::VaeConfig c = gen::parse_vae_config(io::read_text_file(r.model_dir + "/config.json"), r.model_dir);
  EXPECT_GT(c.scaling_factor, 0.0);
  EXPECT_NE(c.scaling_factor, 1.0);
  const io::SafetensorsModel m = io::SafetensorsModel::open(r.model_dir);
  const gen::Vae<nn::Infer> w = gen::load_vae(nn::file_maker(io::safetensors_source(m, r.model_dir), "vae"), c);
  const io::ImageRgb8 img = io::load_image(root + "/img/5.png");
  Tensor x = Tensor::empty({1, 8, 8, 1});
  for (int p = 0; p < 64; ++p) x.data<float>()[p] = float(img.rgb[size_t(3 * p)]) / 127.5f - 1.0f;
  const Tensor z = gen::vae_encode(nn::Infer{}, c, w, x).slice(3, 0, 2).contiguous();
  const Tensor y = gen::vae_decode(nn::Infer{}, c, w, z);
  double err = 0, spread = 0, mean = 0;
  for (int p = 0; p < 64; ++p) mean += x.data<float>()[p] / 64.0;
  for (int p = 0; p < 64; ++p) {
    err += std::pow(y.data<float>()[p] - x.data<float>()[p], 2);
    spread += std::pow(x.data<float>()[p] - mean, 2);
  }
  EXPECT_LT(err, 0.5 * spread);
}

TEST(ImageObjectives, ClassifierTrainsOnIdxPhotos) {
  const std::string root = temp_path("cnn_train");
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(root);
  // 40 28x28 photos of two classes: class 0 bright on the left half, class 1 on the right.
  std::string im = {0, 0, 8, 3, 0, 0, 0, 40, 0, 0, 0, 28, 0, 0, 0, 28}, lb = {0, 0, 8, 1, 0, 0, 0, 40};
  for (int i = 0; i < 40; ++i) {
    const int cls = i % 2;
    for (int y = 0; y < 28; ++y)
      for (int x = 0; x < 28; ++x) im.push_back(char(((x < 14) == (cls == 0)) ? 180 + (i * 7 + y) % 60 : (i * 13 + x) % 40));
    lb.push_back(char(cls));
  }
  std::ofstream(root + "/images.idx", std::ios::binary) << im;
  std::ofstream(root + "/labels.idx", std::ios::binary) << lb;
  const json recipe = {{"objective", "classifier"}, {"data", root + "/images.idx"}, {"labels", root + "/labels.idx"},
                       {"out", root + "/out"}, {"model", {{"widths", {8, 16, 16}}, {"n_features", 16}}},
                       {"lr", 3e-3}, {"steps", 30}, {"batch", 8}};
  const train::TrainResult r = train::run_recipe(train::read_recipe(write_recipe(root + "/cnn.json", recipe)), train::Start::Fresh);
  ASSERT_EQ(r.losses.size(), 30u);
  EXPECT_LT(r.losses.back(), 0.2);  // two separable classes: from ln 2 = 0.69 to near 0
  const vision::CnnConfig c = vision::parse_cnn_config(io::read_text_file(r.model_dir + "/config.json"), r.model_dir);
  EXPECT_EQ(c.widths, (std::vector<int64_t>{8, 16, 16}));
}

TEST(ImageObjectives, RecipesAreCheckedByName) {
  const std::string root = temp_path("img_recipes");
  std::filesystem::create_directories(root);
  auto err = [&](const json& j) { return error_of([&] { train::read_recipe(write_recipe(root + "/r.json", j)); }); };
  EXPECT_NE(err({{"objective", "vae"}, {"base", "x"}, {"data", "d"}, {"out", "o"}}).find("no 'base'"), std::string::npos);
  EXPECT_NE(err({{"objective", "classifier"}, {"data", "d"}, {"out", "o"}}).find("'labels' is required"), std::string::npos);
  EXPECT_NE(err({{"base", "b"}, {"data", "d"}, {"out", "o"}, {"model", json::object()}}).find("'model'"), std::string::npos);
  EXPECT_NE(err({{"objective", "gan"}, {"data", "d"}, {"out", "o"}}).find("'objective'"), std::string::npos);
  // The model's own config is checked by the model's parser, naming the recipe.
  const std::string data = write_images(root);
  const std::string bad = write_recipe(root + "/bad.json", {{"objective", "vae"}, {"data", data}, {"images", root + "/img"},
                                                            {"out", root + "/out"}, {"model", {{"layers_per_block", 2}}}});
  const std::string e = error_of([&] { train::run_recipe(train::read_recipe(bad), train::Start::Fresh); });
  EXPECT_NE(e.find("layers_per_block"), std::string::npos) << e;
  EXPECT_NE(e.find("bad.json"), std::string::npos) << e;
  // Images of another size than the VAE's sample_size.
  const std::string wrong = write_recipe(root + "/wrong.json", {{"objective", "vae"}, {"data", data}, {"images", root + "/img"},
                                                                {"out", root + "/out2"}, {"model", {{"sample_size", 16}, {"block_out_channels", {8, 16}}, {"norm_num_groups", 4}}}});
  EXPECT_NE(error_of([&] { train::run_recipe(train::read_recipe(wrong), train::Start::Fresh); }).find("sample_size"), std::string::npos);
}
