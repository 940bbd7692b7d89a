// The mmproj loader against what llama.cpp's converters write: every width from the tensors (an
// LLaVA-1.5 file's projection_dim is CLIP's own, not the projector's), every key that contradicts
// the tensors an error naming it and the file, the projectors ocellus lacks refused by name.
// Files are the peer fixture rewritten (keys changed, tensors swapped).
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/image.h"
#include "ocellus/lm/lm.h"
#include "ocellus/model/vlm.h"
#include "ocellus/ops/elementwise.h"
#include "ocellus/ops/matmul.h"
#include "ocellus/ops/norm.h"
#include "ocellus/vision/preprocess.h"
#include "testutil.h"

using namespace ocellus;
using io::GgufValue;

namespace {

const std::string kPeer = std::string(OCELLUS_FIXTURES) + "/peer/";
const std::string kFixture = kPeer + "tiny-mmproj-clip-f32.gguf";

// The fixture with some keys set (nullopt: removed) and tensors dropped or added.
struct Edit {
  std::vector<std::pair<std::string, std::optional<GgufValue>>> keys;
  std::vector<std::string> drop;
  std::vector<std::pair<std::string, Tensor>> add;
};

std::string rewrite(const std::string& name, const Edit& e) {
  const io::GgufFile f = io::GgufFile::open(kFixture);
  io::GgufWriter w;
  auto edited = [&](const std::string& k) {
    for (const auto& [ek, v] : e.keys)
      if (ek == k) return true;
    return false;
  };
  for (const auto& [k, v] : f.metadata())
    if (!edited(k)) w.set(k, v);
  for (const auto& [k, v] : e.keys)
    if (v) w.set(k, *v);
  for (const io::GgufTensorInfo& t : f.tensors()) {
    if (std::find(e.drop.begin(), e.drop.end(), t.name) != e.drop.end()) continue;
    const uint8_t* src = f.tensor_data(t);
    const size_t n = t.nbytes;
    w.add_tensor(t.name, t.type_id, t.shape, [src, n](uint8_t* dst) { std::memcpy(dst, src, n); });
  }
  for (const auto& [n, x] : e.add) w.add_tensor(n, x);
  const std::string path = test::temp_path(name + ".gguf");
  w.write(path);
  return path;
}

Tensor fixture_pixels() {
  const std::vector<float> v = test::read_array<float>(kPeer + "mmproj-clip-f32.pixels.f32");
  return vision::hwc_to_chw(Tensor::from_vector({32, 32, 3}, v));
}

// A picture through the file's own preprocessing and model.
Tensor embed_picture(const std::string& path) {
  static const io::ImageRgb8 img = io::load_image(std::string(OCELLUS_FIXTURES) + "/images/chelsea.png");
  return model::load_mmproj(path)->embed(img);
}

// The error a load gives ("" when it loads); its message must name `what` and the file.
std::string load_error(const std::string& path) {
  try {
    model::load_mmproj(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Refused with the file and each fragment in the message; the file is removed.
void expect_refused(const std::string& path, const std::vector<std::string>& fragments) {
  const std::string e = load_error(path);
  std::filesystem::remove(path);
  ASSERT_FALSE(e.empty()) << path << " loaded";
  EXPECT_NE(e.find(path), std::string::npos) << e;
  for (const std::string& s : fragments) EXPECT_NE(e.find(s), std::string::npos) << "'" << s << "' not in: " << e;
}

Tensor rand_f32(const Shape& s, uint32_t seed, float scale = 0.1f) { return test::randn(s, seed, scale); }

}  // namespace

// llama.cpp's converter writes CLIP's own projection_dim (768 for ViT-L/14) into every LLaVA-1.5
// mmproj, and 0 for SigLIP / GLM-Edge towers; the projector's width is mm.2's rows, as llama.cpp
// reads it. Written so, the fixture still gives the peer's embeddings at the f32 bound.
TEST(MmprojKeys, Llava15ProjectionDimIsClipsOwnAndIgnored) {
  const std::vector<float> ref = test::read_array<float>(kPeer + "mmproj-clip-f32.embd.f32");
  for (const std::optional<GgufValue>& v : {std::optional<GgufValue>(GgufValue::u32(48)), std::optional<GgufValue>(GgufValue::u32(0)),
                                            std::optional<GgufValue>(GgufValue::u32(768)), std::optional<GgufValue>()}) {
    const std::string path = rewrite("llava15_projdim", {{{"clip.vision.projection_dim", v}}});
    auto vm = model::load_mmproj(path);
    EXPECT_EQ(vm->n_embd_out(), 64);
    const Tensor rows = vm->embed({fixture_pixels()})[0];
    ASSERT_EQ(rows.numel(), int64_t(ref.size()));
    const double e = test::rel_err(rows, Tensor::from_vector(rows.shape(), ref));
    std::printf("projection_dim %s: rel err %.3g vs peer\n", v ? v->str_value().c_str() : "(absent)", e);
    EXPECT_LE(e, 1e-4);
    std::filesystem::remove(path);
  }
}

// The class of bug: a key the loader reads that contradicts the tensors. Every key of the fixture
// and every optional key the loader reads, removed, of the wrong type, or set to other values,
// either gives the same rows (the key is ignored or agrees), or an error naming the key and the
// file, or, for the few keys that are free parameters of the model (not sizes the tensors
// state), other rows; never a crash.
TEST(MmprojKeys, EveryKeyContradictingTheTensorsIsIgnoredOrNamed) {
  const io::GgufFile f = io::GgufFile::open(kFixture);
  const Tensor base = embed_picture(kFixture);
  // Free parameters: the model's meaning, not sizes the tensors give (the image size only
  // within the position table's patch grid: 33 px still makes 4x4 patches of 8).
  const std::set<std::string> free = {"clip.vision.image_size", "clip.use_gelu", "clip.vision.attention.head_count",
                                      "clip.vision.attention.layer_norm_epsilon", "clip.vision.image_mean",
                                      "clip.vision.image_std", "clip.vision.feature_layer"};
  std::vector<std::pair<std::string, std::vector<std::optional<GgufValue>>>> cases;
  for (const auto& [k, v] : f.metadata()) {
    std::vector<std::optional<GgufValue>> vs = {std::nullopt};
    vs.push_back(v.type == io::GgufType::String ? GgufValue::u32(7) : GgufValue::str("x"));
    if (v.is_integer()) {
      const int64_t i = v.as_int();
      for (int64_t o : {i + 1, 2 * i, int64_t(0)}) vs.push_back(GgufValue::u32(uint32_t(o)));
    } else if (v.is_float()) {
      for (float o : {0.0f, -1.0f, float(v.as_double() * 2)}) vs.push_back(GgufValue::f32(o));
    } else if (v.type == io::GgufType::Bool) {
      vs.push_back(GgufValue::boolean(v.u == 0));
    } else if (v.type == io::GgufType::Array) {
      std::vector<float> a;
      for (size_t j = 0; j < v.size(); ++j) a.push_back(float(v.at(j).as_double()));
      std::vector<float> shorter(a.begin(), a.end() - 1), longer = a;
      longer.push_back(0.5f);
      vs.push_back(GgufValue::floats(shorter)), vs.push_back(GgufValue::floats(longer));
    } else if (v.type == io::GgufType::String) {
      vs.push_back(GgufValue::str("bogus"));
    }
    cases.push_back({k, vs});
  }
  // Optional keys the loader reads that the fixture does not hold.
  cases.push_back({"clip.vision.feature_layer", {GgufValue::ints({2}), GgufValue::ints({1}), GgufValue::ints({3}),
                                                 GgufValue::ints({0}), GgufValue::ints({4}), GgufValue::ints({1, 2}),
                                                 GgufValue::str("x")}});
  cases.push_back({"clip.vision.spatial_merge_size", {GgufValue::u32(1), GgufValue::u32(2), GgufValue::u32(3), GgufValue::u32(0)}});
  for (const char* k : {"clip.use_silu", "clip.use_glu_mlp", "clip.use_rms_norm", "clip.has_minicpmv_projector",
                        "clip.has_glm_projector", "clip.has_qwen2vl_merger"})
    cases.push_back({k, {GgufValue::boolean(true), GgufValue::boolean(false)}});
  cases.push_back({"clip.vision.image_grid_pinpoints", {GgufValue::ints({336, 672, 672, 336})}});
  cases.push_back({"clip.vision.mm_patch_merge_type", {GgufValue::str("spatial_unpad"), GgufValue::str("flat")}});

  int n_same = 0, n_named = 0, n_free = 0;
  for (const auto& [k, values] : cases) {
    for (const std::optional<GgufValue>& v : values) {
      const std::string what = k + " = " + (v ? v->str_value() : "(removed)");
      SCOPED_TRACE(what);
      const std::string path = rewrite("keysweep", {{{k, v}}});
      std::string err;
      Tensor rows;
      try {
        rows = embed_picture(path);
      } catch (const Error& e) {
        err = e.what();
      }
      std::filesystem::remove(path);
      if (!err.empty()) {
        EXPECT_NE(err.find(k), std::string::npos) << "the error does not name the key: " << err;
        EXPECT_NE(err.find(path), std::string::npos) << "the error does not name the file: " << err;
        ++n_named;
      } else if (rows.shape() == base.shape() && test::max_abs_diff(rows, base) == 0.0) {
        ++n_same;
      } else {
        EXPECT_TRUE(free.count(k)) << "other rows, silently";
        ++n_free;
      }
    }
  }
  std::printf("%zu keys: %d same rows, %d errors naming the key, %d free-parameter changes\n", cases.size(), n_same, n_named, n_free);
  EXPECT_GT(n_named, 0);
  EXPECT_GT(n_same, 0);
}

// One broken file per hyperparameter check: each error names the file and the key.
TEST(MmprojKeys, BrokenHyperparametersNameTheFileAndKey) {
  const std::vector<std::pair<std::string, GgufValue>> broken = {
      {"clip.vision.image_size", GgufValue::u32(64)},               // 8x8 patches, 17 positions in the table
      {"clip.vision.patch_size", GgufValue::u32(16)},               // the kernel is 8
      {"clip.vision.embedding_length", GgufValue::u32(64)},         // the tensors are 48 wide
      {"clip.vision.feed_forward_length", GgufValue::u32(128)},     // ffn_down has 96 rows
      {"clip.vision.attention.head_count", GgufValue::u32(5)},      // does not divide 48
      {"clip.vision.attention.layer_norm_epsilon", GgufValue::f32(0)},
      {"clip.vision.block_count", GgufValue::u32(4)},               // the file holds 3
      {"clip.vision.feature_layer", GgufValue::ints({4})},          // past the last block
      {"clip.vision.image_mean", GgufValue::floats({0.5f, 0.5f})},  // 2 values
      {"clip.vision.image_std", GgufValue::floats({0.5f, 0.0f, 0.5f})},
      {"clip.vision.spatial_merge_size", GgufValue::u32(3)},        // does not divide the 4x4 grid
      {"clip.projector_type", GgufValue::str("qformer")},
  };
  for (const auto& [k, v] : broken) {
    SCOPED_TRACE(k);
    expect_refused(rewrite("broken", {{{k, v}}}), {k});
  }
}

// What llama.cpp's converters write for the projectors ocellus does not run: refused, naming it.
TEST(MmprojKeys, ProjectorsOcellusLacksAreRefusedByName) {
  // MobileVLM (v1): convert_image_encoder_to_gguf.py --projector-type ldp.
  expect_refused(rewrite("ldp", {{{"clip.projector_type", GgufValue::str("ldp")}}}), {"'ldp'", "MobileVLM"});
  // GLM-Edge: its own converter sets has_glm_projector and the type "adapter", no LLaVA flag.
  expect_refused(rewrite("glm", {{{"clip.projector_type", GgufValue::str("adapter")}, {"clip.has_glm_projector", GgufValue::boolean(true)},
                                  {"clip.has_llava_projector", std::nullopt}}}),
                 {"GLM-Edge"});
  expect_refused(rewrite("adapter", {{{"clip.projector_type", GgufValue::str("adapter")}}}), {"'adapter'", "GLM-Edge"});
  // MiniCPM-V: "resampler" with its resampler.* tensors.
  expect_refused(rewrite("minicpmv", {{{"clip.projector_type", GgufValue::str("resampler")}, {"clip.has_minicpmv_projector", GgufValue::boolean(true)}}}),
                 {"MiniCPM-V"});
  expect_refused(rewrite("minicpmv2", {{{"clip.projector_type", GgufValue::str("resampler")}}, {}, {{"resampler.query", rand_f32({4, 64}, 1)}}}),
                 {"MiniCPM-V"});
  expect_refused(rewrite("qwen2vl", {{{"clip.projector_type", GgufValue::str("qwen2vl_merger")}}}), {"Qwen2-VL"});
  // LLaVA-1.6: llava_surgery_v2.py + its config's grid pinpoints and spatial_unpad.
  expect_refused(rewrite("llava16", {{{"clip.vision.image_grid_pinpoints", GgufValue::ints({336, 672, 672, 336})},
                                      {"clip.vision.mm_patch_merge_type", GgufValue::str("spatial_unpad")}}}),
                 {"LLaVA-1.6"});
  // Granite Vision: several feature layers, concatenated by llama.cpp.
  expect_refused(rewrite("granite", {{{"clip.vision.feature_layer", GgufValue::ints({1, 2, 3})}}}), {"several layers"});
  // "mlp" with one linear layer only (no mm.2): llama.cpp's mlp without its second matrix.
  expect_refused(rewrite("mlp1", {{}, {"mm.2.weight", "mm.2.bias"}}), {"mm.2"});
}

// Yi-VL: llama.cpp's "mlp" with mm.0, mm.1, mm.3, mm.4 is its mlp_norm (linear, LayerNorm, GELU,
// linear, LayerNorm), the LayerNorms with the tower's epsilon; the width is mm.3's rows.
TEST(MmprojKeys, YiVlMlpNormLoadsWithTheTowersEpsilon) {
  const int64_t d = 64;
  const Tensor w3 = rand_f32({d, d}, 3), b3 = rand_f32({d}, 4), n1w = rand_f32({d}, 5, 0.5f), n1b = rand_f32({d}, 6),
               n4w = rand_f32({d}, 7, 0.5f), n4b = rand_f32({d}, 8);
  const float eps = 0.5f;
  const std::string path = rewrite("yivl", {{{"clip.vision.attention.layer_norm_epsilon", GgufValue::f32(eps)},
                                             {"clip.vision.projection_dim", GgufValue::u32(1280)}},
                                            {"mm.2.weight", "mm.2.bias"},
                                            {{"mm.1.weight", n1w}, {"mm.1.bias", n1b}, {"mm.3.weight", w3}, {"mm.3.bias", b3},
                                             {"mm.4.weight", n4w}, {"mm.4.bias", n4b}}});
  auto vm = model::load_mmproj(path);
  const io::GgufFile f = io::GgufFile::open(path);
  std::filesystem::remove(path);  // both keep their mapping
  EXPECT_EQ(vm->connector().type(), "mlp_norm");
  EXPECT_EQ(vm->n_embd_out(), d);
  const Tensor pix = fixture_pixels();
  const Tensor rows = vm->embed({pix})[0];
  // The same steps spelled out with the ops, from the tower's features.
  const Tensor feats = vm->tower().encode({pix}).reshape({16, 48});
  auto reference = [&](float e) {
    Tensor h = ops::linear(feats, ops::PreparedWeight(f.tensor("mm.0.weight")), f.tensor("mm.0.bias"), true);
    h = ops::layer_norm(h, n1w, n1b, e, true);
    h = ops::activate_ggml_f16(ops::Activation::GeluTanh, h);
    h = ops::linear(h, ops::PreparedWeight(w3), b3, true);
    return ops::layer_norm(h, n4w, n4b, e, true);
  };
  EXPECT_LE(test::rel_err(rows, reference(eps)), 1e-6);
  EXPECT_GT(test::rel_err(rows, reference(1e-5f)), 1e-3);  // the epsilon matters here
}

// MobileVLM V2 (--projector-type ldpv2): the converter squeezes the PEG's depthwise kernel to
// [d, 3, 3]; it loads as [d, 1, 3, 3] does, the width from mm.model.mlp.2.
TEST(MmprojKeys, MobileVlmV2SqueezedPegKernelLoads) {
  const int64_t d = 64;
  const Tensor k = rand_f32({d, 1, 3, 3}, 11, 0.3f);
  auto file = [&](const std::string& name, const Tensor& peg) {
    return rewrite(name, {{{"clip.projector_type", GgufValue::str("ldpv2")}, {"clip.vision.projection_dim", GgufValue::u32(768)}},
                          {"mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias"},
                          {{"mm.model.mlp.0.weight", rand_f32({d, 48}, 12)}, {"mm.model.mlp.0.bias", rand_f32({d}, 13)},
                           {"mm.model.mlp.2.weight", rand_f32({d, d}, 14)}, {"mm.model.mlp.2.bias", rand_f32({d}, 15)},
                           {"mm.model.peg.0.weight", peg}, {"mm.model.peg.0.bias", rand_f32({d}, 16)}}});
  };
  auto load = [&](const std::string& name, const Tensor& peg) {
    const std::string path = file(name, peg);
    auto vm = model::load_mmproj(path);
    std::filesystem::remove(path);
    return vm;
  };
  auto squeezed = load("ldpv2_squeezed", k.reshape({d, 3, 3}).to(DType::F16));
  auto full = load("ldpv2_full", k.to(DType::F16));
  EXPECT_EQ(squeezed->connector().type(), "ldpv2");
  EXPECT_EQ(squeezed->n_embd_out(), d);
  EXPECT_EQ(squeezed->n_tokens_per_image(), 4);  // 4x4 patches pooled 2x2
  const Tensor a = squeezed->embed({fixture_pixels()})[0], b = full->embed({fixture_pixels()})[0];
  EXPECT_EQ(a.shape(), Shape({4, d}));
  EXPECT_EQ(test::max_abs_diff(a, b), 0.0);
}

// A Hugging Face folder's vision config: the errors name its config.json.
TEST(MmprojKeys, HfVisionConfigErrorsNameTheFile) {
  const std::string dir = test::temp_path("hf_vision_errors");
  std::filesystem::create_directories(dir);
  const io::GgufFile tf = io::GgufFile::open(kPeer + "tiny-llama-f32.gguf");
  const nlohmann::json text = nlohmann::json::parse(lm::hf_config_json(*lm::load_gguf(tf)));
  auto write = [&](const nlohmann::json& vision, const nlohmann::json& top) {
    nlohmann::json j = top;
    j["vision_config"] = vision;
    std::ofstream(dir + "/config.json") << j.dump(2);
  };
  const nlohmann::json v = {{"model_type", "clip_vision_model"}, {"hidden_size", 48}, {"intermediate_size", 96},
                            {"num_hidden_layers", 3}, {"num_attention_heads", 4}, {"image_size", 32}, {"patch_size", 8}};
  auto expect_names_config = [&](const std::function<void()>& load, const std::string& fragment) {
    try {
      load();
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(dir + "/config.json"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  // A plain tower folder (model_type clip_vision_model at the top).
  nlohmann::json plain = v;
  plain["hidden_act"] = "relu";
  std::ofstream(dir + "/config.json") << plain.dump(2);
  expect_names_config([&] { vision::load_hf_tower(dir); }, "hidden_act");
  plain["hidden_act"] = "quick_gelu";
  std::ofstream(dir + "/config.json") << plain.dump(2);
  expect_names_config([&] { vision::load_hf_tower(dir, 7); }, "feature layer 7");
  // A LLaVA folder: the feature layer past the tower, an activation ocellus lacks.
  write(v, {{"model_type", "llava"}, {"text_config", text}, {"vision_feature_layer", -9}});
  expect_names_config([&] { model::load_hf_vision(dir); }, "feature layer -9");
  nlohmann::json v2 = v;
  v2["hidden_act"] = "relu";
  write(v2, {{"model_type", "llava"}, {"text_config", text}});
  expect_names_config([&] { model::load_hf_vision(dir); }, "hidden_act");
  write(v, {{"model_type", "llava"}, {"text_config", text}, {"projector_hidden_act", "relu"}});
  expect_names_config([&] { model::load_hf_vision(dir); }, "projector's activation");
  std::filesystem::remove_all(dir);
}
