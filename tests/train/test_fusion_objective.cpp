// The "fusion" objective through `ocellus train`: LlamaFusion on a frozen GGUF base over a VAE's
// latents; the exported folder draws with `ocellus generate-image`, whose bad input is one clear
// error each, before any work.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cliutil.h"
#include "ocellus/core/error.h"
#include "ocellus/gen/fusion_model.h"
#include "ocellus/io/file.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/image.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/model/synth.h"
#include "ocellus/train/trainer.h"
#include "testutil.h"

using namespace ocellus;
using namespace ocellus::test;
using nlohmann::json;

namespace {

// 16 8x8 grey scenes, a bright square in one quadrant, captioned with its place.
std::string write_scenes(const std::string& root) {
  static const char* kWhere[] = {"top left", "top right", "bottom left", "bottom right"};
  std::filesystem::create_directories(root + "/img");
  json records = json::array();
  for (int i = 0; i < 16; ++i) {
    io::ImageRgb8 img;
    img.width = img.height = 8;
    img.rgb.assign(8 * 8 * 3, 0);
    const int q = i % 4, qy = q / 2 * 4, qx = q % 2 * 4;
    for (int y = qy; y < qy + 4; ++y)
      for (int x = qx; x < qx + 4; ++x)
        for (int c = 0; c < 3; ++c) img.rgb[size_t((y * 8 + x) * 3 + c)] = uint8_t(200 + i);
    const std::string name = std::to_string(i) + ".png";
    io::save_png(root + "/img/" + name, img);
    records.push_back({{"id", std::to_string(i)}, {"image", name},
                       {"conversations", {{{"from", "human"}, {"value", "<image>\nDescribe."}},
                                          {{"from", "gpt"}, {"value", std::string("a square in the ") + kWhere[q]}}}}});
  }
  std::ofstream(root + "/data.json") << records.dump();
  return root + "/data.json";
}

std::string write_json(const std::string& path, const json& j) {
  std::ofstream(path) << j.dump(2);
  return path;
}

// A VAE and a base, then the fusion recipe (modified by `edit`); returns the recipe's path.
struct FusionRun {
  std::string root, recipe;
};
FusionRun prepare(const std::string& name) {
  FusionRun r;
  r.root = temp_path(name);
  std::filesystem::remove_all(r.root);
  const std::string data = write_scenes(r.root);
  const json vae = {{"objective", "vae"}, {"data", data}, {"images", r.root + "/img"}, {"out", r.root + "/vae"},
                    {"model", {{"block_out_channels", {8, 8}}, {"latent_channels", 2}, {"norm_num_groups", 4}, {"sample_size", 8}}},
                    {"lr", 3e-3}, {"steps", 20}, {"batch", 8}, {"seed", 3}, {"export_dtype", "f16"}};
  train::run_recipe(train::read_recipe(write_json(r.root + "/vae.json", vae)), train::Start::Fresh);
  model::SynthOptions o;
  o.dtype = DType::F32;
  model::write_synth_model(model::synth_shape("tiny-llama"), o, r.root + "/base.gguf");
  const json fusion = {{"objective", "fusion"}, {"base", r.root + "/base.gguf"}, {"vae", r.root + "/vae/model"}, {"data", data},
                       {"images", r.root + "/img"}, {"out", r.root + "/fusion"}, {"trainable", {"image."}},
                       {"model", {{"block_out_channels", {8, 16}}, {"norm_num_groups", 4}}}, {"understanding", 0.5},
                       {"lr", 2e-3}, {"steps", 30}, {"batch", 8}, {"seed", 5}};
  r.recipe = write_json(r.root + "/fusion.json", fusion);
  return r;
}

}  // namespace

TEST(FusionObjective, TrainsTheImageSideOnlyAndExportsAFolderThatDraws) {
  const FusionRun run = prepare("fusion_objective");
  const train::TrainResult r = train::run_recipe(train::read_recipe(run.recipe), train::Start::Fresh);
  ASSERT_EQ(r.losses.size(), 30u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += r.losses[size_t(i)] / 5, last += r.losses[size_t(25 + i)] / 5;
  EXPECT_LT(last, first) << "first " << first << ", last " << last;
  // The metrics log carries both terms.
  const auto lines = train::read_metrics_log(run.root + "/fusion/metrics.jsonl");
  ASSERT_EQ(lines.size(), 30u);
  EXPECT_TRUE(lines[0].second.contains("ce") && lines[0].second.contains("mse"));
  // The folder: the image side only (the base stays in its file), the VAE beside it, the base
  // named relative to it.
  const json cfg = json::parse(io::read_text_file(r.model_dir + "/config.json"));
  EXPECT_EQ(cfg["model_type"], "llamafusion");
  EXPECT_EQ(cfg["vae"], "vae");
  EXPECT_TRUE(std::filesystem::path(cfg["base"].get<std::string>()).is_relative());
  const io::SafetensorsModel st = io::SafetensorsModel::open(r.model_dir + "/model.safetensors");
  for (const std::string& n : st.names()) EXPECT_TRUE(n.starts_with("image.")) << n;
  EXPECT_TRUE(st.has("image.blk.0.attn_q.weight") && st.has("image.unet.conv_in.weight") && st.has("image.boi"));
  // The VAE was exported at f16 (its recipe's export_dtype): kernels 16-bit, norms and biases f32.
  const io::SafetensorsModel vae = io::SafetensorsModel::open(r.model_dir + "/vae/model.safetensors");
  for (const std::string& n : vae.names()) EXPECT_EQ(vae.info(n).dtype, vae.tensor(n).ndim() >= 2 ? "F16" : "F32") << n;
  // It draws through the verb.
  const std::string png = run.root + "/drawn.png";
  const CliResult g = run_cli("generate-image -m '" + r.model_dir + "' -p 'a square in the top left' -o '" + png + "' --steps 3");
  ASSERT_EQ(g.status, 0) << g.err;
  EXPECT_NE(g.out.find("wrote " + png), std::string::npos) << g.out;
  const io::ImageRgb8 img = io::load_image(png);
  EXPECT_EQ(img.width, 8);
  EXPECT_EQ(img.height, 8);
  // A further stage starts from the folder ('init'): at learning rate 0 it exports what it read.
  json more = json::parse(io::read_text_file(run.recipe));
  more["init"] = r.model_dir, more["out"] = run.root + "/more", more["lr"] = 0, more["steps"] = 2, more["seed"] = 9;
  const train::TrainResult r2 = train::run_recipe(train::read_recipe(write_json(run.root + "/more.json", more)), train::Start::Fresh);
  const io::SafetensorsModel st2 = io::SafetensorsModel::open(r2.model_dir + "/model.safetensors");
  ASSERT_EQ(st2.names(), st.names());
  for (const std::string& n : st.names()) EXPECT_EQ(rel_err(st2.tensor(n), st.tensor(n)), 0.0) << n;
  more["init"] = run.root + "/nothing_here";
  EXPECT_NE(error_of([&] { train::run_recipe(train::read_recipe(write_json(run.root + "/bad.json", more)), train::Start::Overwrite); })
                .find("'init'"),
            std::string::npos);
}

TEST(FusionObjective, RecipesAndTheVerbRefuseBadInputByName) {
  const std::string root = temp_path("fusion_recipes");
  std::filesystem::create_directories(root);
  auto err = [&](const json& j) { return error_of([&] { train::read_recipe(write_json(root + "/r.json", j)); }); };
  EXPECT_NE(err({{"objective", "fusion"}, {"base", "b.gguf"}, {"data", "d"}, {"out", "o"}}).find("'vae' is required"), std::string::npos);
  EXPECT_NE(err({{"objective", "fusion"}, {"base", "b.gguf"}, {"vae", "v"}, {"data", "d"}, {"out", "o"}, {"understanding", 2}})
                .find("'understanding'"),
            std::string::npos);
  EXPECT_NE(err({{"objective", "fusion"}, {"base", "b.gguf"}, {"vae", "v"}, {"data", "d"}, {"out", "o"}, {"export_dtype", "q4_0"}})
                .find("'export_dtype' must be"),
            std::string::npos);
  EXPECT_NE(err({{"base", "b"}, {"data", "d"}, {"out", "o"}, {"export_dtype", "f16"}}).find("'export_dtype' belongs to"), std::string::npos);
  // The verb: each error one line, before any work.
  const std::string dir = root + "/not_fusion";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << R"({"model_type": "llava"})";
  struct Case {
    std::string args, says;
    int status;
  };
  const std::vector<Case> cases = {
      {"-m '" + dir + "' -p 'a bag' -o '" + root + "/x.png'", "'llava' model without image modules", 1},
      {"-m '" + root + "/r.json' -p 'a bag' -o '" + root + "/x.png'", "is a file", 1},
      {"-m '" + root + "/missing' -p 'a bag' -o '" + root + "/x.png'", "does not exist", 1},
      {"-m '" + dir + "' -p '  ' -o '" + root + "/x.png'", "the caption (-p) is empty", 1},
      {"-m '" + dir + "' -p 'a bag' -o '" + root + "/no/such/x.png'", "does not exist", 1},
      {"-m '" + dir + "' -p 'a bag' -o '" + root + "/x.png' --steps 0", "--steps", 2},
  };
  for (const Case& c : cases) {
    const CliResult r = run_cli("generate-image " + c.args);
    EXPECT_EQ(r.status, c.status) << c.args << ": " << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << c.args << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}
