// Vision towers loaded from Hugging Face-layout safetensors against a PyTorch re-statement
// (tests/reference/torch_ref.py, Debian's python3-torch), run by the test on the same weights.
#include <cstdlib>
#include <fstream>
#include <sys/stat.h>

#include "ocellus/core/error.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/vision/vit.h"
#include "testutil.h"
#include "torch_ref.h"

using namespace ocellus;

namespace {

struct TinyTower {
  std::string model_type, act;
  int64_t image = 30, patch = 7, d = 32, heads = 4, ff = 64, layers = 2;
};

// A random tower in the HF layout (config.json + model.safetensors) under `dir`.
void write_tower(const std::string& dir, const TinyTower& t, uint32_t seed) {
  ::mkdir(dir.c_str(), 0755);
  const bool siglip = t.model_type == "siglip_vision_model";
  const int64_t np = (t.image / t.patch) * (t.image / t.patch) + (siglip ? 0 : 1);
  std::vector<std::pair<std::string, Tensor>> w;
  const std::string p = "vision_model.";
  auto add = [&](const std::string& n, const Shape& s, float scale) { w.emplace_back(p + n, test::randn(s, seed++, scale)); };
  add("embeddings.patch_embedding.weight", {t.d, 3, t.patch, t.patch}, 0.1f);
  if (siglip) add("embeddings.patch_embedding.bias", {t.d}, 0.1f);
  else add("embeddings.class_embedding", {t.d}, 1.0f);
  add("embeddings.position_embedding.weight", {np, t.d}, 0.5f);
  if (!siglip) add("pre_layrnorm.weight", {t.d}, 1.0f), add("pre_layrnorm.bias", {t.d}, 0.1f);
  for (int64_t i = 0; i < t.layers; ++i) {
    const std::string l = "encoder.layers." + std::to_string(i) + ".";
    for (const char* n : {"layer_norm1", "layer_norm2"}) add(l + n + ".weight", {t.d}, 1.0f), add(l + n + ".bias", {t.d}, 0.1f);
    for (const char* n : {"q_proj", "k_proj", "v_proj", "out_proj"})
      add(l + "self_attn." + n + ".weight", {t.d, t.d}, 0.2f), add(l + "self_attn." + n + ".bias", {t.d}, 0.1f);
    add(l + "mlp.fc1.weight", {t.ff, t.d}, 0.2f), add(l + "mlp.fc1.bias", {t.ff}, 0.1f);
    add(l + "mlp.fc2.weight", {t.d, t.ff}, 0.2f), add(l + "mlp.fc2.bias", {t.d}, 0.1f);
  }
  add("post_layernorm.weight", {t.d}, 1.0f), add("post_layernorm.bias", {t.d}, 0.1f);
  io::write_safetensors(dir + "/model.safetensors", w);
  std::ofstream(dir + "/config.json") << "{\"model_type\": \"" << t.model_type << "\", \"hidden_size\": " << t.d
                                      << ", \"intermediate_size\": " << t.ff << ", \"num_hidden_layers\": " << t.layers
                                      << ", \"num_attention_heads\": " << t.heads << ", \"image_size\": " << t.image
                                      << ", \"patch_size\": " << t.patch << ", \"hidden_act\": \"" << t.act << "\"}\n";
}

// ours vs PyTorch for a batch of two random images; returns the relative error.
double tower_vs_torch(const TinyTower& t, int64_t feature_layer, uint32_t seed) {
  const std::string dir = test::temp_path(t.model_type + std::to_string(feature_layer));
  write_tower(dir, t, seed);
  const vision::VisionTower tower = vision::load_hf_tower(dir, feature_layer);
  const std::vector<Tensor> imgs = {test::randn({3, t.image, t.image}, seed + 100), test::randn({3, t.image, t.image}, seed + 101)};
  const Tensor ours = tower.encode(imgs);
  Tensor batch = Tensor::empty({2, 3, t.image, t.image});
  std::memcpy(batch.data<float>(), imgs[0].data<float>(), size_t(imgs[0].numel()) * 4);
  std::memcpy(batch.data<float>() + imgs[0].numel(), imgs[1].data<float>(), size_t(imgs[1].numel()) * 4);
  const std::vector<float> ref = test::torch_ref({"vit", dir, test::write_temp("pixels.f32", batch), "", std::to_string(feature_layer)},
                                                 dir + "/torch.f32");
  EXPECT_EQ(size_t(ours.numel()), ref.size()) << ours.shape().str();
  if (size_t(ours.numel()) != ref.size()) return 1.0;
  return test::rel_err(ours, Tensor::from_vector(ours.shape(), ref));
}

}  // namespace

TEST(VitTorch, SiglipMatchesPyTorch) {
  // 30 px at patch 7: 4x4 patches and 2 px unused, as SigLIP-so400m/14 at 384 px leaves 6.
  const TinyTower t{"siglip_vision_model", "gelu_pytorch_tanh"};
  const double e = tower_vs_torch(t, 0, 11);
  std::printf("siglip tower vs PyTorch: rel err %.3g\n", e);
  // worst 3.61e-7 over generic / avx2 / avx512 (avx2) on an Intel Xeon (AVX-512 VNNI); bound = 10x
  EXPECT_LE(e, 3.6e-6);
}

TEST(VitTorch, ClipPenultimateLayerMatchesPyTorch) {
  TinyTower t{"clip_vision_model", "quick_gelu"};
  t.image = 28, t.layers = 3;
  const double e = tower_vs_torch(t, -2, 21);
  std::printf("clip tower (layer -2) vs PyTorch: rel err %.3g\n", e);
  // worst 3.17e-7 over generic / avx2 / avx512 (all alike) on an Intel Xeon (AVX-512 VNNI); bound = 10x
  EXPECT_LE(e, 3.2e-6);
}

TEST(VitTorch, ConfigFromHf) {
  io::HfVisionConfig v;
  v.model_type = "siglip_vision_model", v.hidden_size = 1152, v.intermediate_size = 4304, v.num_hidden_layers = 27;
  v.num_attention_heads = 16, v.image_size = 384, v.patch_size = 14, v.layer_norm_eps = 1e-6, v.hidden_act = "gelu_pytorch_tanh";
  vision::VitConfig c = vision::vit_config_from_hf(v, -2);
  EXPECT_EQ(c.grid(), 27);
  EXPECT_EQ(c.n_layer_run, 26);
  EXPECT_FALSE(c.post_norm);
  EXPECT_FALSE(c.class_token);
  EXPECT_EQ(c.preprocess.mode, vision::PreprocessConfig::Mode::Squash);
  EXPECT_THROW(vision::vit_config_from_hf(v, -28), Error);
  v.hidden_act = "relu6";
  EXPECT_THROW(vision::vit_config_from_hf(v, 0), Error);
}

TEST(VitTorch, PreprocessorConfigOverridesDefaults) {
  TinyTower t{"clip_vision_model", "quick_gelu"};
  t.image = 28;
  const std::string dir = test::temp_path("clip_pp");
  write_tower(dir, t, 5);
  EXPECT_EQ(vision::load_hf_tower(dir).config().preprocess.mode, vision::PreprocessConfig::Mode::ShortestEdge);
  std::ofstream(dir + "/preprocessor_config.json")
      << R"({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.5, 0.5], "size": {"height": 28, "width": 28}})";
  const vision::PreprocessConfig p = vision::load_hf_tower(dir).config().preprocess;
  EXPECT_EQ(p.mode, vision::PreprocessConfig::Mode::Squash);
  EXPECT_EQ(p.std[0], 0.25f);
  EXPECT_EQ(p.mean[2], 0.5f);
  std::ofstream(dir + "/preprocessor_config.json") << R"({"size": {"shortest_edge": 336}, "crop_size": 336})";
  try {
    vision::load_hf_tower(dir);
    FAIL() << "a 336 px processor loaded for a 28 px tower";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("resized to 336"), std::string::npos) << e.what();
  }
  std::ofstream(dir + "/preprocessor_config.json") << R"({"image_mean": [0.5, 0.5]})";
  EXPECT_THROW(vision::load_hf_tower(dir), Error);
}
