// The training pipeline end to end on a tiny LLaVA folder written here (random CLIP tower,
// llama text model, MLP projector, a BPE vocabulary learned from the data): LLaVA JSON with a
// malformed record skipped, the feature cache (one entry per distinct picture), a recipe run
// for 6 steps, a run stopped after 3 and resumed from its checkpoint giving the same losses,
// checkpoint retention, and the exported folder loading in the inference path with the
// training model's logits.
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "ocellus/lm/family.h"
#include "ocellus/autograd/autograd.h"
#include "ocellus/core/error.h"
#include "ocellus/connect/connector.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/lm/lm.h"
#include "ocellus/io/image.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/model/init.h"
#include "ocellus/model/vlm.h"
#include "ocellus/model/vlm_train.h"
#include "ocellus/ops/shape.h"
#include "ocellus/text/bpe_train.h"
#include "ocellus/data/llava_json.h"
#include "ocellus/train/dist.h"
#include "ocellus/train/feature_cache.h"
#include "ocellus/train/optim.h"
#include "ocellus/train/trainer.h"
#include "ocellus/vision/preprocess.h"
#include "testutil.h"

using namespace ocellus;
namespace fs = std::filesystem;

namespace {

const char* kColors[] = {"red", "green", "blue", "yellow"};
const uint8_t kRgb[4][3] = {{220, 20, 20}, {20, 200, 30}, {30, 40, 210}, {230, 220, 20}};

// ocellus init's sizes for a tiny model: text width 32, tower 16 px / 4 px patches, width 16.
model::InitSpec tiny_spec(int64_t layers, int64_t vision_layers) {
  model::InitSpec spec;
  spec.n_embd = 32, spec.n_ff = 64, spec.n_layer = layers, spec.n_head = 4, spec.n_head_kv = 2;
  spec.image_size = 16, spec.patch_size = 4, spec.vision_embd = 16, spec.vision_ff = 32, spec.vision_layers = vision_layers;
  spec.vision_heads = 2;
  return spec;
}

struct World {
  std::string root, base, data, images, cache;
  World() {
    root = test::temp_path("trainer");
    fs::remove_all(root);
    base = root + "/base", images = root + "/images", data = root + "/data.json", cache = root + "/cache.safetensors";
    fs::create_directories(base), fs::create_directories(images);
    // Pictures: four colours, and a copy of the first under another name.
    for (int c = 0; c < 4; ++c) {
      io::ImageRgb8 img;
      img.width = img.height = 16;
      for (int i = 0; i < 16 * 16; ++i)
        for (int k = 0; k < 3; ++k) img.rgb.push_back(uint8_t(kRgb[c][k] + (i % 7) * 3));
      io::save_png(images + "/" + kColors[c] + ".png", img);
    }
    fs::copy_file(images + "/red.png", images + "/red_copy.png");
    nlohmann::json recs = nlohmann::json::array();
    std::string corpus;
    for (int c = 0; c < 5; ++c) {
      const std::string color = kColors[c % 4];
      const std::string file = c == 4 ? "red_copy.png" : color + ".png";
      recs.push_back({{"id", c}, {"image", file},
                      {"conversations", {{{"from", "human"}, {"value", "<image>\nWhat colour is the picture?"}},
                                         {{"from", "gpt"}, {"value", "It is " + color + "."}}}}});
      corpus += "What colour is the picture? It is " + color + ". ";
    }
    recs.push_back({{"id", "broken"}, {"conversations", "not a list"}});  // malformed: skipped by the recipe
    std::ofstream(data) << recs.dump(1);
    // Tokenizer learned from the text, with ChatML's markers.
    text::BpeTrainOptions o;
    o.vocab_size = 300;
    o.specials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    o.eos = "<|endoftext|>";
    o.min_frequency = 1;
    const text::Tokenizer tok = text::train_bpe({corpus + "system user assistant You are a helpful assistant.\n"}, o);
    tok.save_hf_json(base + "/tokenizer.json");
    // Weights: tower (hidden 24, 2 blocks, 16 px / 4 px patches), llama text model, projector.
    uint32_t seed = 500;
    auto r = [&](const Shape& s, float sc) { return test::randn(s, seed++, sc); };
    auto one = [&](int64_t d) {
      Tensor t = r({d}, 0.1f);
      for (int64_t i = 0; i < d; ++i) t.data<float>()[i] += 1;
      return t;
    };
    const std::string e = "vision_tower.vision_model.embeddings.", pre = "vision_tower.vision_model.pre_layrnorm.";
    std::vector<std::pair<std::string, Tensor>> t = {{e + "patch_embedding.weight", r({24, 3, 4, 4}, 0.2f)},
                                                     {e + "class_embedding", r({24}, 0.2f)},
                                                     {e + "position_embedding.weight", r({17, 24}, 0.2f)},
                                                     {pre + "weight", one(24)}, {pre + "bias", r({24}, 0.1f)}};
    for (int b = 0; b < 2; ++b) {
      const std::string p = "vision_tower.vision_model.encoder.layers." + std::to_string(b) + ".", a = p + "self_attn.";
      for (const char* n : {"layer_norm1", "layer_norm2"})
        t.push_back({p + n + ".weight", one(24)}), t.push_back({p + n + ".bias", r({24}, 0.1f)});
      for (const char* n : {"q_proj", "k_proj", "v_proj", "out_proj"}) t.push_back({a + n + ".weight", r({24, 24}, 0.2f)});
      t.push_back({p + "mlp.fc1.weight", r({48, 24}, 0.2f)}), t.push_back({p + "mlp.fc2.weight", r({24, 48}, 0.2f)});
      for (const char* n : {"q_proj", "k_proj", "v_proj", "out_proj"}) t.push_back({a + n + ".bias", r({24}, 0.1f)});
      t.push_back({p + "mlp.fc1.bias", r({48}, 0.1f)}), t.push_back({p + "mlp.fc2.bias", r({24}, 0.1f)});
    }
    const int64_t V = tok.n_vocab(), D = 32, FF = 64;
    t.push_back({"language_model.model.embed_tokens.weight", r({V, D}, 0.5f)});
    for (int l = 0; l < 2; ++l) {
      const std::string p = "language_model.model.layers." + std::to_string(l) + ".";
      t.push_back({p + "input_layernorm.weight", one(D)});
      t.push_back({p + "self_attn.q_proj.weight", r({D, D}, 0.2f)});
      t.push_back({p + "self_attn.k_proj.weight", r({16, D}, 0.2f)});
      t.push_back({p + "self_attn.v_proj.weight", r({16, D}, 0.2f)});
      t.push_back({p + "self_attn.o_proj.weight", r({D, D}, 0.2f)});
      t.push_back({p + "post_attention_layernorm.weight", one(D)});
      t.push_back({p + "mlp.gate_proj.weight", r({FF, D}, 0.2f)});
      t.push_back({p + "mlp.up_proj.weight", r({FF, D}, 0.2f)});
      t.push_back({p + "mlp.down_proj.weight", r({D, FF}, 0.2f)});
    }
    t.push_back({"language_model.model.norm.weight", one(D)});
    t.push_back({"language_model.lm_head.weight", r({V, D}, 0.3f)});
    t.push_back({"multi_modal_projector.linear_1.weight", r({D, 24}, 0.3f)});
    t.push_back({"multi_modal_projector.linear_1.bias", r({D}, 0.1f)});
    t.push_back({"multi_modal_projector.linear_2.weight", r({D, D}, 0.3f)});
    t.push_back({"multi_modal_projector.linear_2.bias", r({D}, 0.1f)});
    io::write_safetensors(base + "/model.safetensors", t);
    nlohmann::json cfg;
    cfg["model_type"] = "llava";
    cfg["text_config"] = {{"model_type", "llama"}, {"hidden_size", D}, {"intermediate_size", FF}, {"num_hidden_layers", 2},
                          {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"vocab_size", V},
                          {"max_position_embeddings", 256}, {"rms_norm_eps", 1e-5}};
    cfg["vision_config"] = {{"model_type", "clip_vision_model"}, {"hidden_size", 24}, {"intermediate_size", 48},
                            {"num_hidden_layers", 2}, {"num_attention_heads", 2}, {"image_size", 16}, {"patch_size", 4},
                            {"hidden_act", "quick_gelu"}};
    cfg["vision_feature_layer"] = -1;
    cfg["vision_feature_select_strategy"] = "default";
    cfg["projector_hidden_act"] = "gelu";
    std::ofstream(base + "/config.json") << cfg.dump(2);
  }
  ~World() { fs::remove_all(root); }

  // The cache over the four pictures (and the copy of red, when asked): the tower's features,
  // or its hidden states after `hidden_after` blocks. Returns the distinct images encoded.
  int64_t build_cache(int64_t hidden_after = -1, bool with_copy = false) const {
    const auto vm = model::load_hf_vision(base);
    std::vector<std::string> paths;
    for (const char* f : {"red", "green", "blue", "yellow"}) paths.push_back(images + "/" + f + ".png");
    if (with_copy) paths.push_back(images + "/red_copy.png");
    return train::build_feature_cache(vm->tower(), paths, cache, 8, {}, hidden_after);
  }

  std::string recipe(const std::string& name, const std::string& out, const nlohmann::json& extra = {}) const {
    nlohmann::json r = {{"base", base}, {"data", data}, {"images", images}, {"cache", cache}, {"chat_template", "chatml"},
                        {"skip_bad_records", true}, {"trainable", {"multi_modal_projector.", "model.layers."}},
                        {"groups", {{{"prefix", "multi_modal_projector."}, {"lr", 2e-2}}}},
                        {"lr", 5e-3}, {"weight_decay", 0.01}, {"warmup", 2}, {"min_lr_ratio", 0.1}, {"steps", 6}, {"batch", 2}, {"max_len", 160},
                        {"seed", 3}, {"out", out}, {"checkpoint_every", 2}, {"keep", 2}};
    if (extra.is_object())
      for (const auto& [k, v] : extra.items()) r[k] = v;
    const std::string p = root + "/" + name + ".json";
    std::ofstream(p) << r.dump(2);
    return p;
  }
};

}  // namespace

// The learning-rate factor written out from its definition (linear warmup from 0 over `warmup`
// steps, then a cosine from 1 to min_ratio over the remaining steps, held at min_ratio past the
// end), independently of train::cosine_schedule.
static double schedule_formula(int64_t step, int64_t warmup, int64_t total, double min_ratio) {
  if (step < warmup) return double(step) / double(warmup);
  const double t = std::min(1.0, double(step - warmup) / double(total - warmup));
  return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + std::cos(3.14159265358979323846 * t));
}

TEST(Schedule, WarmupThenCosineAtTheBoundaries) {
  for (const double min_ratio : {0.0, 0.1}) {
    const int64_t warmup = 10, total = 110;
    // step 0, warmup-1, warmup, the middle of the cosine, the last step, past the end
    for (const int64_t step : {int64_t(0), warmup - 1, warmup, warmup + (total - warmup) / 2, total - 1, total, total + 7}) {
      const double want = schedule_formula(step, warmup, total, min_ratio);
      EXPECT_NEAR(train::cosine_schedule(step, warmup, total, min_ratio), want, 1e-12) << "step " << step << " min " << min_ratio;
    }
    // The values the formula gives there, spelled out: no warmup bug can hide behind the formula.
    EXPECT_EQ(train::cosine_schedule(0, warmup, total, min_ratio), 0.0);
    EXPECT_NEAR(train::cosine_schedule(warmup - 1, warmup, total, min_ratio), 0.9, 1e-12);
    EXPECT_NEAR(train::cosine_schedule(warmup, warmup, total, min_ratio), 1.0, 1e-12);
    EXPECT_NEAR(train::cosine_schedule(60, warmup, total, min_ratio), min_ratio + (1 - min_ratio) * 0.5, 1e-12);
    EXPECT_NEAR(train::cosine_schedule(total, warmup, total, min_ratio), min_ratio, 1e-12);
    EXPECT_NEAR(train::cosine_schedule(total + 7, warmup, total, min_ratio), min_ratio, 1e-12);
  }
  // No warmup: the first step runs at the full rate.
  EXPECT_NEAR(train::cosine_schedule(0, 0, 50, 0.0), 1.0, 1e-12);
  EXPECT_NEAR(train::cosine_schedule(49, 0, 50, 0.0), schedule_formula(49, 0, 50, 0.0), 1e-12);
}

TEST(Trainer, RecipeRunsResumesExactlyAndExports) {
  World w;
  // The cache: five records, four distinct pictures.
  EXPECT_EQ(w.build_cache(-1, true), 4);

  const train::TrainResult a = train::run_recipe(train::read_recipe(w.recipe("a", w.root + "/a")), train::Start::Fresh);
  ASSERT_EQ(a.losses.size(), 6u);
  for (double l : a.losses) std::printf("%.6f ", l);
  std::printf("\n");
  EXPECT_LT(a.losses.back(), a.losses.front());
  // The run followed the schedule: the logged rate of step s (1-based) is lr times the factor
  // of step s - 1 (warmup 2 of 6 steps, min_lr_ratio 0.1; the recipe's values).
  {
    std::ifstream log(w.root + "/a/metrics.jsonl");
    int64_t s = 0;
    for (std::string line; std::getline(log, line); ++s) {
      const nlohmann::json j = nlohmann::json::parse(line);
      EXPECT_EQ(j["step"].get<int64_t>(), s + 1);
      EXPECT_NEAR(j["lr"].get<double>(), 5e-3 * schedule_formula(s, 2, 6, 0.1), 1e-12) << "step " << s + 1;
    }
    EXPECT_EQ(s, 6);
  }

  // Stopped after 3 steps (its last checkpoint is step 2), then resumed: the same losses.
  const std::string rb = w.recipe("b", w.root + "/b");
  const train::TrainResult b1 = train::run_recipe(train::read_recipe(rb), train::Start::Fresh, {}, 3);
  ASSERT_EQ(b1.losses.size(), 3u);
  const train::TrainResult b2 = train::run_recipe(train::read_recipe(rb), train::Start::Resume);
  EXPECT_EQ(b2.first_step, 2);
  ASSERT_EQ(b2.losses.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(b2.losses[i], a.losses[i + 2]) << "step " << i + 3;
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(b1.losses[i], a.losses[i]);
  // The log holds each step once; two checkpoints are kept, the latest is step 6.
  std::ifstream log(w.root + "/b/metrics.jsonl");
  int lines = 0;
  for (std::string l; std::getline(log, l);) ++lines;
  EXPECT_EQ(lines, 6);
  int dirs = 0;
  for (const auto& e : fs::directory_iterator(w.root + "/b/checkpoints")) dirs += e.is_directory();
  EXPECT_EQ(dirs, 2);
  EXPECT_EQ(test::read_file(w.root + "/b/checkpoints/latest"), "step-00000006");
  EXPECT_TRUE(fs::exists(w.root + "/b/loss.png"));

  // The exported folder runs in the inference path with the trained weights.
  const model::Vlm v = model::load_vlm(a.model_dir, "");
  const io::SafetensorsModel st = io::SafetensorsModel::open(a.model_dir);
  const model::TrainableVlm tv(model::train_config_from_hf(io::read_hf_config(a.model_dir)), io::safetensors_source(st, a.model_dir));
  const Tensor feats = v.vision->tower().encode({vision::preprocess(io::load_image(w.images + "/blue.png"), v.vision->config().preprocess)});
  const Tensor f2 = feats.reshape({feats.dim(1), feats.dim(2)});
  const Tensor rows = v.vision->connector().forward(f2);
  const std::string prompt = "<|im_start|>user\n<image>\nWhat colour?<|im_end|>\n";
  const model::Spliced sp = model::splice_prompt(*v.lm, model::plan_splice(v.tok, prompt, 1, false), {rows});
  lm::KvCache cache(v.lm->config(), 64, DType::F32);
  const Tensor want = v.lm->forward(sp.embeddings, cache, true);
  ag::NoGrad ng;
  const Tensor got = tv.forward(model::TrainSample{sp.ids, std::vector<uint8_t>(sp.ids.size(), 0), {f2}})->value;
  EXPECT_LE(test::rel_err(got, want), 1e-5);

  // The GGUF pair holds the same weights: run with exact numerics (no llama.cpp rounding
  // emulation, an f32 cache) it gives the same logits.
  const io::GgufFile tf = io::GgufFile::open(a.gguf_model), vf = io::GgufFile::open(a.gguf_mmproj);
  const auto glm = lm::load_gguf(tf);
  lm::LmConfig lc = glm->config();
  lc.rope.angles = ops::RopeAngles::Exact, lc.gelu_f16_table = false, lc.prescale_q = false, lc.f32_ggml_order = false;
  const lm::LanguageModel exact(lc, glm->weights());
  vision::VitConfig vc2 = model::load_mmproj(a.gguf_mmproj)->config();
  vc2.act_ggml_f16 = false, vc2.ggml_order = false;
  const vision::VisionTower gtower(vc2, vision::load_vit_weights(vc2, io::gguf_source(vf), vision::gguf_vit_names()));
  connect::ConnectorConfig cc;
  cc.d_in = 24, cc.d_out = 32, cc.act = ops::Activation::GeluErf;
  const auto gconn = connect::load_connector("mlp", cc, io::gguf_source(vf), connect::Layout::Gguf);
  const Tensor gf = gtower.encode({vision::preprocess(io::load_image(w.images + "/blue.png"), v.vision->config().preprocess)});
  const Tensor grows = gconn->forward(gf.reshape({gf.dim(1), gf.dim(2)}));
  EXPECT_LE(test::rel_err(grows, rows), 1e-6);
  const text::Tokenizer gtok = text::Tokenizer::from_gguf(tf);
  EXPECT_EQ(gtok.encode("What colour is the picture?", false), v.tok.encode("What colour is the picture?", false));
  const model::Spliced gsp = model::splice_prompt(exact, model::plan_splice(gtok, prompt, 1, false), {grows});
  EXPECT_EQ(gsp.ids, sp.ids);
  lm::KvCache gcache(lc, 64, DType::F32);
  EXPECT_LE(test::rel_err(exact.forward(gsp.embeddings, gcache, true), want), 1e-5);
  // And the pair runs as llama.cpp computes GGUF models.
  const model::Vlm gv = model::load_vlm(a.gguf_model, a.gguf_mmproj);
  EXPECT_EQ(gv.vision->n_tokens_per_image(), 16);
}

TEST(Trainer, LoraRecipeTrainsAdaptersAndExportsThemMerged) {
  World w;
  w.build_cache();
  const train::TrainResult r = train::run_recipe(
      train::read_recipe(w.recipe("lora", w.root + "/lora", {{"lora", {{"rank", 4}, {"alpha", 8}, {"targets", {"q_proj", "up_proj"}}}},
                                                              {"trainable", {"multi_modal_projector."}}, {"steps", 20},
                                                              {"lr", 2e-2}, {"checkpoint_every", 0}})),
      train::Start::Fresh);
  // Two steps of two make an epoch over the four pictures: the first epoch against the last.
  ASSERT_EQ(r.losses.size(), 20u);
  EXPECT_LT(r.losses[18] + r.losses[19], 0.8 * (r.losses[0] + r.losses[1]));
  const io::SafetensorsModel base = io::SafetensorsModel::open(w.base), out = io::SafetensorsModel::open(r.model_dir);
  auto differs = [&](const std::string& n) { return test::max_abs_diff(base.tensor(n), out.tensor(n)) > 0; };
  EXPECT_TRUE(differs("language_model.model.layers.0.self_attn.q_proj.weight"));   // adapter merged
  EXPECT_TRUE(differs("language_model.model.layers.1.mlp.up_proj.weight"));
  EXPECT_FALSE(differs("language_model.model.layers.0.self_attn.k_proj.weight"));  // not a target
  EXPECT_FALSE(differs("language_model.lm_head.weight"));                          // frozen
  EXPECT_TRUE(differs("multi_modal_projector.linear_1.weight"));                   // trainable
  for (const std::string& n : out.names()) EXPECT_EQ(n.find("lora"), std::string::npos) << n;
}

TEST(Trainer, TowerUpperBlocksTrainFromCachedHiddenStates) {
  World w;
  w.build_cache(1);  // hidden states after block 0
  // A cache of features is refused for a recipe that needs hidden states (and the reverse).
  const std::string rf = w.recipe("tower", w.root + "/tower", {{"tower_from", 1}, {"trainable", {"multi_modal_projector.", "vision_tower.vision_model.encoder.layers.1."}}});
  const train::TrainResult r = train::run_recipe(train::read_recipe(rf), train::Start::Fresh);
  EXPECT_EQ(r.losses.size(), 6u);
  const io::SafetensorsModel base = io::SafetensorsModel::open(w.base), out = io::SafetensorsModel::open(r.model_dir);
  auto differs = [&](const std::string& n) { return test::max_abs_diff(base.tensor(n), out.tensor(n)) > 0; };
  EXPECT_TRUE(differs("vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight"));
  EXPECT_FALSE(differs("vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight"));
  // The exported tower (inference path, from pixels) gives the trained model's image rows.
  const model::Vlm v = model::load_vlm(r.model_dir, "");
  const Tensor pix = vision::preprocess(io::load_image(w.images + "/green.png"), v.vision->config().preprocess);
  const Tensor rows = v.vision->embed(std::vector<Tensor>{pix})[0];
  const io::SafetensorsModel st = io::SafetensorsModel::open(r.model_dir);
  model::TrainVlmConfig tc = model::train_config_from_hf(io::read_hf_config(r.model_dir));
  tc.tower_from = 1;
  const model::TrainableVlm tv(tc, io::safetensors_source(st, r.model_dir));
  const Tensor h = v.vision->tower().hidden({pix}, 1);
  const model::TrainSample s{std::vector<int32_t>(16, -1), std::vector<uint8_t>(16, 0), {h.reshape({h.dim(1), h.dim(2)})}};
  const auto lmh = lm::load_hf(r.model_dir);
  ag::NoGrad ng;
  lm::KvCache cache(lmh->config(), 16, DType::F32);
  EXPECT_LE(test::rel_err(tv.forward(s)->value, lmh->forward(rows, cache, true)), 1e-5);
  // A feature cache does not serve a recipe that trains the tower.
  w.build_cache();
  EXPECT_THROW(train::run_recipe(train::read_recipe(rf), train::Start::Fresh), Error);
}

TEST(Trainer, TwoProcessesGiveTheLossesOfOne) {
  if (!train::dist_built()) GTEST_FAIL() << "built without OpenMPI: run scripts/deps.sh (libopenmpi-dev) and rebuild";
  World w;
  w.build_cache();
  const train::TrainResult one = train::run_recipe(train::read_recipe(w.recipe("one", w.root + "/one")), train::Start::Fresh);
  // Gradient accumulation (one sequence per pass) gives the same losses too.
  const train::TrainResult acc =
      train::run_recipe(train::read_recipe(w.recipe("acc", w.root + "/acc", {{"micro_batch_tokens", 1}})), train::Start::Fresh);
  ASSERT_EQ(acc.losses.size(), one.losses.size());
  for (size_t i = 0; i < acc.losses.size(); ++i) EXPECT_NEAR(acc.losses[i], one.losses[i], 1e-4 * one.losses[i]) << i;
  const std::string cmd = "mpirun --allow-run-as-root --oversubscribe -np 2 " + std::string(OCELLUS_CLI) + " train --recipe " +
                          w.recipe("two", w.root + "/two") + " > " + w.root + "/two.log 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << test::read_file(w.root + "/two.log");
  std::ifstream log(w.root + "/two/metrics.jsonl");
  std::vector<double> two;
  for (std::string line; std::getline(log, line);) two.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  ASSERT_EQ(two.size(), one.losses.size()) << test::read_file(w.root + "/two.log");
  double worst = 0;
  for (size_t i = 0; i < two.size(); ++i) worst = std::max(worst, std::abs(two[i] - one.losses[i]) / one.losses[i]);
  std::printf("2 processes vs 1: worst relative loss difference %.2g over %zu steps\n", worst, two.size());
  EXPECT_LE(worst, 1e-4);  // summation order only; a lost half-batch differs by > 1e-2
  EXPECT_TRUE(fs::exists(w.root + "/two/model/model.safetensors"));
}

TEST(Trainer, KilledMidRunLeavesALoadableLatestCheckpoint) {
  World w;
  w.build_cache();
  // A checkpoint every step, and the process killed (SIGKILL) at several moments.
  const std::string rp = w.recipe("kill", w.root + "/kill", {{"steps", 400}, {"checkpoint_every", 1}, {"keep", 2}});
  int checked = 0;
  const std::string latest = w.root + "/kill/checkpoints/latest";
  for (const char* after : {"0.05", "0.13", "0.21", "0.29", "0.37"}) {
    // Started (resuming after the first), killed that long after a checkpoint exists.
    const std::string cmd = "sh -c '" + std::string(OCELLUS_CLI) + " train --recipe " + rp + (checked ? " --resume" : "") +
                            " > /dev/null 2>&1 & pid=$!; n=0; while [ ! -f " + latest + " ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done; "
                            "sleep " + after + "; kill -9 $pid; wait $pid'";
    std::system(cmd.c_str());
    ASSERT_TRUE(fs::exists(latest)) << "no checkpoint written within 30 s";
    const std::string dir = w.root + "/kill/checkpoints/" + test::read_file(latest);
    // Every file of the checkpoint `latest` names is whole.
    EXPECT_NO_THROW(io::SafetensorsFile::open(dir + "/model.safetensors")) << dir;
    EXPECT_NO_THROW(io::SafetensorsFile::open(dir + "/optimizer.safetensors")) << dir;
    EXPECT_FALSE(nlohmann::json::parse(test::read_file(dir + "/trainer.json"), nullptr, false).is_discarded()) << dir;
    ++checked;
  }
  EXPECT_EQ(checked, 5);
  // And the run resumes from it.
  const train::TrainResult r = train::run_recipe(train::read_recipe(rp), train::Start::Resume, {}, 1);
  EXPECT_GT(r.first_step, 0);
}

// The recipe r, written to path, is refused with an error that says `what`.
void expect_recipe_error(const std::string& path, const nlohmann::json& r, const std::string& what) {
  std::ofstream(path) << r.dump();
  try {
    train::run_recipe(train::read_recipe(path), train::Start::Fresh);
    ADD_FAILURE() << "no error (expected one saying '" << what << "')";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

TEST(Trainer, FromScratchTextPretrainingNeedsNoCache) {
  World w;
  // A new model (random weights, the World's vocabulary) and text-only conversations.
  const model::InitSpec spec = tiny_spec(2, 1);
  const std::string m0 = w.root + "/m0";
  EXPECT_GT(model::init_llava(spec, text::Tokenizer::from_file(w.base), m0), 0);
  nlohmann::json recs = nlohmann::json::array();
  for (int c = 0; c < 4; ++c)
    recs.push_back({{"id", c}, {"conversations", {{{"from", "human"}, {"value", "What colour is the picture?"}},
                                                   {{"from", "gpt"}, {"value", std::string("It is ") + kColors[c] + "."}}}}});
  std::ofstream(w.root + "/text.json") << recs.dump();
  nlohmann::json r = {{"base", m0}, {"data", w.root + "/text.json"}, {"lr", 1e-2}, {"warmup", 2}, {"steps", 20},
                      {"batch", 2}, {"max_len", 128}, {"seed", 3}, {"out", w.root + "/text_run"}};
  std::ofstream(w.root + "/text_recipe.json") << r.dump();
  const train::TrainResult res = train::run_recipe(train::read_recipe(w.root + "/text_recipe.json"), train::Start::Fresh);
  ASSERT_EQ(res.losses.size(), 20u);
  EXPECT_LT(res.losses[18] + res.losses[19], 0.8 * (res.losses[0] + res.losses[1]));
  const model::Vlm v = model::load_vlm(res.model_dir, "");  // chat template from the folder: ChatML
  EXPECT_EQ(lm::detect_chat_template(res.model_dir, v.tok), text::ChatTemplate::ChatML);
  // The GGUF carries the folder's chat template.
  EXPECT_EQ(lm::detect_chat_template(io::GgufFile::open(res.gguf_model)), text::ChatTemplate::ChatML);
  // Records with pictures but no cache in the recipe: an error saying so.
  r["data"] = w.data, r["images"] = w.images, r["skip_bad_records"] = true;
  expect_recipe_error(w.root + "/text_recipe.json", r, "names no 'cache'");
  // The same records' text alone (language-model pretraining on the conversations).
  r["ignore_images"] = true, r["steps"] = 2, r["out"] = w.root + "/text_run2";
  std::ofstream(w.root + "/text_recipe.json") << r.dump();
  const train::TrainResult t1 = train::run_recipe(train::read_recipe(w.root + "/text_recipe.json"), train::Start::Fresh);
  EXPECT_EQ(t1.losses.size(), 2u);
  // With the loss on every token the questions count too: a different loss.
  r["loss"] = "all", r["out"] = w.root + "/text_run3";
  std::ofstream(w.root + "/text_recipe.json") << r.dump();
  const train::TrainResult t2 = train::run_recipe(train::read_recipe(w.root + "/text_recipe.json"), train::Start::Fresh);
  ASSERT_EQ(t2.losses.size(), 2u);
  EXPECT_NE(t2.losses[0], t1.losses[0]);
  // Loss on everything but the replies: the replies' tokens and the rest make up every token, so
  // at step 1 (same weights, same batch) the three token-weighted losses add up.
  r["loss"] = "not_assistant", r["out"] = w.root + "/text_run4";
  std::ofstream(w.root + "/text_recipe.json") << r.dump();
  const train::TrainResult t3 = train::run_recipe(train::read_recipe(w.root + "/text_recipe.json"), train::Start::Fresh);
  ASSERT_EQ(t3.losses.size(), 2u);
  auto first_counted = [](const std::string& out) {
    std::ifstream f(out + "/metrics.jsonl");
    std::string line;
    std::getline(f, line);
    return nlohmann::json::parse(line)["loss_tokens"].get<double>();
  };
  const double n_a = first_counted(w.root + "/text_run2"), n_all = first_counted(w.root + "/text_run3"),
               n_na = first_counted(w.root + "/text_run4");
  EXPECT_GT(n_a, 0);
  EXPECT_GT(n_na, 0);
  EXPECT_EQ(n_a + n_na, n_all);
  EXPECT_NEAR(t1.losses[0] * n_a + t3.losses[0] * n_na, t2.losses[0] * n_all, 1e-5 * t2.losses[0] * n_all);
  r["loss"] = "everything";
  std::ofstream(w.root + "/text_recipe.json") << r.dump();
  EXPECT_THROW(train::read_recipe(w.root + "/text_recipe.json"), Error);

  // "min_turns": 2 trains on the conversations with two or more replies only: the same losses as
  // a file that holds only those.
  nlohmann::json mixed = nlohmann::json::array(), multi = nlohmann::json::array();
  for (int c = 0; c < 6; ++c) {
    nlohmann::json conv = {{{"from", "human"}, {"value", "What colour is the picture?"}},
                           {{"from", "gpt"}, {"value", std::string("It is ") + kColors[c % 4] + "."}}};
    if (c % 2) {
      conv.push_back({{"from", "human"}, {"value", "Are you sure?"}});
      conv.push_back({{"from", "gpt"}, {"value", "Yes."}});
    }
    mixed.push_back({{"id", c}, {"conversations", conv}});
    if (c % 2) multi.push_back(mixed.back());
  }
  std::ofstream(w.root + "/mixed.json") << mixed.dump();
  std::ofstream(w.root + "/multi.json") << multi.dump();
  nlohmann::json m = {{"base", m0}, {"data", w.root + "/multi.json"}, {"steps", 3}, {"batch", 2}, {"max_len", 128},
                      {"seed", 5}, {"out", w.root + "/multi_run"}};
  std::ofstream(w.root + "/multi_recipe.json") << m.dump();
  const train::TrainResult only = train::run_recipe(train::read_recipe(w.root + "/multi_recipe.json"), train::Start::Fresh);
  m["data"] = w.root + "/mixed.json", m["out"] = w.root + "/mixed_run";
  std::ofstream(w.root + "/multi_recipe.json") << m.dump();
  const train::TrainResult all = train::run_recipe(train::read_recipe(w.root + "/multi_recipe.json"), train::Start::Fresh);
  m["min_turns"] = 2, m["out"] = w.root + "/filtered_run";
  std::ofstream(w.root + "/multi_recipe.json") << m.dump();
  const train::TrainResult filtered = train::run_recipe(train::read_recipe(w.root + "/multi_recipe.json"), train::Start::Fresh);
  EXPECT_EQ(filtered.losses, only.losses);
  EXPECT_NE(all.losses, only.losses);
  m["min_turns"] = 3;  // none left: an error, not an empty run
  std::ofstream(w.root + "/multi_recipe.json") << m.dump();
  expect_recipe_error(w.root + "/multi_recipe.json", m, "no usable samples");
  m["min_turns"] = 0;
  std::ofstream(w.root + "/multi_recipe.json") << m.dump();
  EXPECT_THROW(train::read_recipe(w.root + "/multi_recipe.json"), Error);
}

TEST(Trainer, DataErrorsNameTheRecord) {
  const std::string j = R"([{"id": 1, "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]},
                            {"id": 2, "conversations": [{"from": "alien", "value": "x"}]}])";
  try {
    data::parse_llava_json(j, "d.json", data::OnBad::Fail);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("record 1: conversations[0]: unknown speaker 'alien'"), std::string::npos) << e.what();
  }
  std::vector<std::string> skipped;
  EXPECT_EQ(data::parse_llava_json(j, "d.json", data::OnBad::Skip, &skipped).size(), 1u);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_THROW(train::parse_recipe(R"({"base": "b", "data": "d", "cache": "c", "out": "o", "stepz": 3})", "r.json"), Error);
  EXPECT_THROW(train::parse_recipe(R"({"base": "b", "data": "d", "cache": "c", "out": "o", "lr": -1})", "r.json"), Error);
}

TEST(Trainer, TruncationNeverCutsAnImage) {
  text::BpeTrainOptions o;
  o.vocab_size = 280;
  o.specials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  o.min_frequency = 1;
  const text::Tokenizer tok = text::train_bpe({"system user assistant hello there answer"}, o);
  data::Record r{"0", "x.png", {{"user", "<image>\nhello there"}, {"assistant", "answer"}}};
  const data::Encoded full = data::encode_record(r, tok, text::ChatTemplate::ChatML, 8, 1000);
  ASSERT_FALSE(full.truncated);
  EXPECT_TRUE(full.has_image);
  size_t first = 0;
  while (full.ids[first] >= 0) ++first;
  for (size_t i = first; i < first + 8; ++i) EXPECT_EQ(full.ids[i], -1);
  // Cut inside the image rows: the sequence ends before them.
  const data::Encoded cut = data::encode_record(r, tok, text::ChatTemplate::ChatML, 8, int64_t(first) + 3);
  EXPECT_TRUE(cut.truncated);
  EXPECT_FALSE(cut.has_image);
  EXPECT_EQ(cut.ids.size(), first);
  // Cut after the image: it stays whole.
  const data::Encoded after = data::encode_record(r, tok, text::ChatTemplate::ChatML, 8, int64_t(first) + 10);
  EXPECT_TRUE(after.has_image);
  EXPECT_EQ(after.ids.size(), first + 10);
  // Only the reply (and its end marker) is in the loss.
  std::vector<int32_t> masked;
  for (size_t i = 0; i < full.ids.size(); ++i)
    if (full.mask[i]) masked.push_back(full.ids[i]);
  EXPECT_EQ(tok.decode(masked, false), "answer<|im_end|>");
}

TEST(Trainer, SiglipRecipeTrainsTheTowerResumesAndExports) {
  World w;
  const model::InitSpec spec = tiny_spec(1, 2);
  const std::string m0 = w.root + "/m0";
  model::init_llava(spec, text::Tokenizer::from_file(w.base), m0);
  auto recipe = [&](const std::string& out, int steps) {
    nlohmann::json r = {{"objective", "siglip"}, {"base", m0}, {"data", w.data}, {"images", w.images}, {"skip_bad_records", true},
                        {"trainable", {"vision_tower."}}, {"siglip", {{"text_embd", 16}, {"text_ff", 32}, {"text_layers", 1},
                                                                      {"text_heads", 2}, {"embed_dim", 8}}},
                        {"lr", 3e-3}, {"warmup", 2}, {"steps", steps}, {"batch", 4}, {"seed", 5}, {"out", out},
                        {"checkpoint_every", 2}, {"keep", 2}};
    const std::string p = out + ".json";
    std::ofstream(p) << r.dump();
    return train::read_recipe(p);
  };
  const train::TrainResult a = train::run_recipe(recipe(w.root + "/sa", 30), train::Start::Fresh);
  ASSERT_EQ(a.losses.size(), 30u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += a.losses[size_t(i)], last += a.losses[size_t(25 + i)];
  std::printf("siglip losses: first five %.4f, last five %.4f\n", first / 5, last / 5);
  EXPECT_LT(last, 0.5 * first);
  // Stopped after 3 steps and resumed from step 2: the same losses as unbroken.
  const train::TrainResult b1 = train::run_recipe(recipe(w.root + "/sb", 30), train::Start::Fresh, {}, 3);
  const train::TrainResult b2 = train::run_recipe(recipe(w.root + "/sb", 30), train::Start::Resume);
  EXPECT_EQ(b2.first_step, 2);
  ASSERT_EQ(b2.losses.size(), 28u);
  for (size_t i = 0; i < 28; ++i) EXPECT_EQ(b2.losses[i], a.losses[i + 2]) << "step " << i + 3;
  // The export: the base folder with the trained tower; the text model untouched; it runs.
  const io::SafetensorsModel before = io::SafetensorsModel::open(m0), after = io::SafetensorsModel::open(a.model_dir);
  EXPECT_EQ(before.names(), after.names());
  int changed = 0;
  for (const std::string& n : before.names()) {
    const bool same = test::rel_err(after.tensor(n), before.tensor(n)) == 0.0;
    if (n.rfind("vision_tower.", 0) == 0) changed += !same;
    else EXPECT_TRUE(same) << n;
  }
  EXPECT_GT(changed, 20);
  EXPECT_TRUE(fs::exists(w.root + "/sa/siglip.safetensors"));
  EXPECT_TRUE(fs::exists(w.root + "/sa/loss.png"));
  const model::Vlm v = model::load_vlm(a.model_dir, "");
  EXPECT_EQ(v.vision->n_tokens_per_image(), 16);
  // A CLIP-style tower (class token) is refused with the reason.
  nlohmann::json bad = {{"objective", "siglip"}, {"base", w.base}, {"data", w.data}, {"images", w.images}, {"skip_bad_records", true},
                        {"steps", 2}, {"batch", 2}, {"out", w.root + "/sc"}};
  expect_recipe_error(w.root + "/sc.json", bad, "class token");
}

// The World's pictures cached through the model's own tower, then its connector alone trained
// on the World's records for `steps` steps (output under root/name).
train::TrainResult train_connector_only(const World& w, const std::string& model, const std::string& name, int steps) {
  std::vector<std::string> paths;
  for (const char* f : {"red", "green", "blue", "yellow"}) paths.push_back(w.images + "/" + f + ".png");
  train::build_feature_cache(model::load_hf_vision(model)->tower(), paths, w.cache, 8, {});
  const nlohmann::json r = {{"base", model}, {"data", w.data}, {"images", w.images}, {"cache", w.cache},
                            {"skip_bad_records", true}, {"trainable", {"multi_modal_projector."}}, {"lr", 1e-2},
                            {"steps", steps}, {"batch", 2}, {"out", w.root + "/" + name}};
  std::ofstream(w.root + "/" + name + ".json") << r.dump();
  return train::run_recipe(train::read_recipe(w.root + "/" + name + ".json"), train::Start::Fresh);
}

TEST(Trainer, AttentionBlockConnectorTrainsAndExportsBothWays) {
  World w;
  model::InitSpec spec = tiny_spec(1, 1);
  spec.connector = "attn_blocks";
  const std::string m0 = w.root + "/m0";
  model::init_llava(spec, text::Tokenizer::from_file(w.base), m0);
  const auto vm = model::load_hf_vision(m0);
  EXPECT_EQ(vm->connector().type(), "attn_blocks");
  const train::TrainResult res = train_connector_only(w, m0, "ab", 8);
  EXPECT_LT(res.losses.back(), res.losses.front());
  // The Hugging Face folder and the GGUF pair both load it as an attn_blocks connector with the
  // trained weights; the GGUF runs llama.cpp's numerics (f16 GELU table, tanh form), hence the
  // small difference.
  const model::Vlm hf = model::load_vlm(res.model_dir, ""), gg = model::load_vlm(res.gguf_model, res.gguf_mmproj);
  EXPECT_EQ(hf.vision->connector().type(), "attn_blocks");
  EXPECT_EQ(gg.vision->connector().type(), "attn_blocks");
  const io::ImageRgb8 img = io::load_image(w.images + "/blue.png");
  const Tensor a = hf.vision->embed(img), b = gg.vision->embed(img);
  const double e = test::rel_err(b, a);
  std::printf("attn_blocks: HF folder vs GGUF pair image rows: rel err %.2e\n", e);
  EXPECT_LE(e, 1e-3);
  const Tensor m0rows = vm->embed(img);
  EXPECT_GT(test::rel_err(a, m0rows), 1e-3);  // trained: not the initial connector
  // init --from: the trained text model and tower with a new MLP connector (a connector ablation).
  spec.connector = "mlp2x_gelu", spec.from = res.model_dir;
  model::init_llava(spec, text::Tokenizer::from_file(w.base), w.root + "/m1");
  const io::SafetensorsModel trained = io::SafetensorsModel::open(res.model_dir), m1 = io::SafetensorsModel::open(w.root + "/m1");
  for (const char* n : {"vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight", "language_model.model.embed_tokens.weight"})
    EXPECT_EQ(test::rel_err(m1.tensor(n), trained.tensor(n)), 0.0) << n;
  EXPECT_TRUE(m1.has("multi_modal_projector.linear_1.weight"));
  EXPECT_FALSE(m1.has("multi_modal_projector.proj.weight"));
  spec.n_embd = 64, spec.n_ff = 128;  // another shape: refused, naming the tensor
  EXPECT_THROW(model::init_llava(spec, text::Tokenizer::from_file(w.base), w.root + "/m2"), Error);
}

// init refuses the spec with an error naming `field`.
void expect_init_error(const World& w, const model::InitSpec& spec, const std::string& field) {
  try {
    model::init_llava(spec, text::Tokenizer::from_file(w.base), w.root + "/bad");
    ADD_FAILURE() << "no error for " << field;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
  }
}

TEST(Trainer, InitFeatureLayerReachesCacheAndExports) {
  // init --feature-layer -2 on a 2-block tower: the connector reads the hidden state after block 0,
  // in the folder, in the feature cache built from it, and in the exported GGUF pair.
  World w;
  model::InitSpec spec = tiny_spec(1, 2);
  spec.feature_layer = -2;
  const std::string m0 = w.root + "/m0";
  model::init_llava(spec, text::Tokenizer::from_file(w.base), m0);
  const auto vm = model::load_hf_vision(m0);
  EXPECT_EQ(vm->tower().config().n_layer_run, 1);
  const io::ImageRgb8 img = io::load_image(w.images + "/green.png");
  const Tensor px = vision::preprocess(img, vm->tower().config().preprocess);
  const Tensor after0 = vm->tower().hidden({px}, 1);
  const Tensor feats = vm->tower().encode({px});
  EXPECT_LE(test::rel_err(feats, after0.reshape(feats.shape())), 1e-6);
  // The last block's output differs: the choice is real.
  model::InitSpec last = spec;
  last.feature_layer = -1;
  model::init_llava(last, text::Tokenizer::from_file(w.base), w.root + "/m_last");
  EXPECT_GT(test::rel_err(model::load_hf_vision(w.root + "/m_last")->tower().encode({px}), feats), 1e-3);
  // Train the connector from a cache of those features; both exports run one block.
  const train::TrainResult res = train_connector_only(w, m0, "fl", 4);
  const model::Vlm hf = model::load_vlm(res.model_dir, ""), gg = model::load_vlm(res.gguf_model, res.gguf_mmproj);
  EXPECT_EQ(hf.vision->tower().config().n_layer_run, 1);
  EXPECT_EQ(gg.vision->tower().config().n_layer_run, 1);
  EXPECT_LE(test::rel_err(gg.vision->embed(img), hf.vision->embed(img)), 1e-3);
  // Outside the tower: refused, naming the field.
  spec.feature_layer = 3;
  expect_init_error(w, spec, "feature_layer");
}

TEST(Trainer, InitMergeTrainsAndExportsBothWays) {
  // init --merge 2 on a 4x4 patch grid: 4 image tokens, each a 2x2 block of patch features side by
  // side, in the training model, the Hugging Face folder and the GGUF pair alike.
  World w;
  model::InitSpec spec = tiny_spec(1, 1);
  spec.merge = 2;
  const std::string m0 = w.root + "/m0";
  model::init_llava(spec, text::Tokenizer::from_file(w.base), m0);
  const train::TrainResult res = train_connector_only(w, m0, "mg", 6);
  EXPECT_LT(res.losses.back(), res.losses.front());
  const model::Vlm hf = model::load_vlm(res.model_dir, ""), gg = model::load_vlm(res.gguf_model, res.gguf_mmproj);
  EXPECT_EQ(hf.vision->n_tokens_per_image(), 4);
  EXPECT_EQ(gg.vision->n_tokens_per_image(), 4);
  EXPECT_EQ(io::GgufFile::open(res.gguf_mmproj).get_int(io::gguf::key::kClipSpatialMerge), 2);
  const io::ImageRgb8 img = io::load_image(w.images + "/yellow.png");
  const Tensor rows = hf.vision->embed(img);
  ASSERT_EQ(rows.shape(), (Shape{4, 32}));
  EXPECT_LE(test::rel_err(gg.vision->embed(img), rows), 1e-3);  // the GGUF pair: llama.cpp's GELU table
  // The training model reads the same features into the same image rows (through the language
  // model: its logits over a sequence of the 4 image rows equal the inference model's).
  const Tensor px = vision::preprocess(img, hf.vision->config().preprocess);
  const Tensor f = hf.vision->tower().encode({px});
  const io::SafetensorsModel st = io::SafetensorsModel::open(res.model_dir);
  const model::TrainableVlm tv(model::train_config_from_hf(io::read_hf_config(res.model_dir)), io::safetensors_source(st, res.model_dir));
  EXPECT_EQ(tv.n_image_tokens(), 4);
  const model::TrainSample s{std::vector<int32_t>(4, -1), std::vector<uint8_t>(4, 0), {f.reshape({f.dim(1), f.dim(2)})}};
  const auto lmh = lm::load_hf(res.model_dir);
  ag::NoGrad ng;
  lm::KvCache cache(lmh->config(), 16, DType::F32);
  EXPECT_LE(test::rel_err(tv.forward(s)->value, lmh->forward(rows, cache, true)), 1e-5);
  // A merge the patch grid cannot take is refused at init, naming the field.
  spec.merge = 3;
  expect_init_error(w, spec, "merge");
}

// Cache keys are FNV-1a 64 of the image file's bytes (the published test vectors), and a cache
// written with the earlier, mistyped hash is refused with a clear error, not read as missing images.
TEST(FeatureCache, KeysAreFnv1a64AndEarlierCachesAreRefused) {
  EXPECT_EQ(train::content_key(""), "cbf29ce484222325");
  EXPECT_EQ(train::content_key("a"), "af63dc4c8601ec8c");
  EXPECT_EQ(train::content_key("foobar"), "85944171f73967e8");
  const std::string path = test::temp_path("old_cache.safetensors");
  const Tensor f = Tensor::zeros({4, 8});
  io::write_safetensors(path, {{"0123456789abcdef", f}},
                        {{"ocellus.kind", "feature_cache"}, {"ocellus.n_features", "4"}, {"ocellus.hidden_after", "-1"},
                         {"ocellus.width", "8"}, {"ocellus.tower", "siglip"}, {"ocellus.layers_run", "1"}});
  try {
    train::FeatureCache::open(path, model::load_mmproj(std::string(OCELLUS_FIXTURES) + "/peer/tiny-mmproj-clip-f32.gguf")->tower());
    ADD_FAILURE() << "an earlier cache was opened";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rebuild it with ocellus cache"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

// TinyLLaVA's best recipe, "share": a Phi-2-shaped text model + a SigLIP tower + an MLP
// connector; pretraining trains the connector, the whole language model and the tower's upper
// block (from cached hidden states below it), then fine-tuning trains the connector and the
// language model on the features of the pretrained tower. The same stages ship as
// recipes/tinyllava-share/.
TEST(Trainer, TinyLlavaShareRecipeTrainsPhi2WithSiglipAndMlp) {
  World w;
  model::InitSpec spec = tiny_spec(2, 2);
  spec.family = "phi2";
  const std::string phi = w.root + "/phi2-siglip";
  model::init_llava(spec, text::Tokenizer::from_file(w.base), phi);
  auto cache_of = [&](const std::string& model, int64_t hidden_after, const std::string& out) {
    const auto vm = model::load_hf_vision(model);
    std::vector<std::string> paths;
    for (const char* f : {"red", "green", "blue", "yellow"}) paths.push_back(w.images + "/" + f + ".png");
    train::build_feature_cache(vm->tower(), paths, out, 8, {}, hidden_after);
  };
  // Stage 1: the tower's block 1 (its last) trains from the hidden states after block 0.
  cache_of(phi, 1, w.root + "/hidden.safetensors");
  const std::string r1 = w.recipe("share1", w.root + "/share1",
                                  {{"base", phi}, {"cache", w.root + "/hidden.safetensors"}, {"tower_from", 1},
                                   {"trainable", {"multi_modal_projector.", "model.", "lm_head.", "vision_tower.vision_model.encoder.layers.1."}},
                                   {"groups", {{{"prefix", "vision_tower."}, {"lr", 1e-3}}}}, {"steps", 12}, {"lr", 1e-2}});
  const train::TrainResult a = train::run_recipe(train::read_recipe(r1), train::Start::Fresh);
  ASSERT_EQ(a.losses.size(), 12u);
  EXPECT_LT(a.losses[10] + a.losses[11], 0.8 * (a.losses[0] + a.losses[1]));
  const io::SafetensorsModel base = io::SafetensorsModel::open(phi), s1 = io::SafetensorsModel::open(a.model_dir);
  auto moved = [](const io::SafetensorsModel& x, const io::SafetensorsModel& y, const std::string& n) {
    return test::max_abs_diff(x.tensor(n), y.tensor(n)) > 0;
  };
  EXPECT_TRUE(moved(base, s1, "vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight"));
  EXPECT_FALSE(moved(base, s1, "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight"));
  EXPECT_TRUE(moved(base, s1, "language_model.model.layers.0.self_attn.dense.weight"));  // phi2's names
  EXPECT_TRUE(moved(base, s1, "language_model.model.layers.1.mlp.fc2.bias"));
  EXPECT_TRUE(moved(base, s1, "multi_modal_projector.linear_2.weight"));
  // Stage 2: fine-tuning on the features of the pretrained tower, the tower frozen.
  cache_of(a.model_dir, -1, w.root + "/features.safetensors");
  const std::string r2 = w.recipe("share2", w.root + "/share2",
                                  {{"base", a.model_dir}, {"cache", w.root + "/features.safetensors"},
                                   {"trainable", {"multi_modal_projector.", "model.", "lm_head."}}, {"steps", 8}, {"lr", 5e-3}});
  const train::TrainResult b = train::run_recipe(train::read_recipe(r2), train::Start::Fresh);
  ASSERT_EQ(b.losses.size(), 8u);
  EXPECT_LT(b.losses[6] + b.losses[7], a.losses[0] + a.losses[1]);
  const io::SafetensorsModel s2 = io::SafetensorsModel::open(b.model_dir);
  EXPECT_FALSE(moved(s1, s2, "vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight"));
  EXPECT_TRUE(moved(s1, s2, "language_model.model.final_layernorm.weight"));
  // The result runs as a phi2 model, from its folder and from its GGUF pair.
  EXPECT_EQ(lm::load_model(b.model_dir)->config().arch, "phi2");
  EXPECT_EQ(lm::load_model(b.gguf_model)->config().arch, "phi2");
  const model::Vlm v = model::load_vlm(b.gguf_model, b.gguf_mmproj);
  EXPECT_EQ(v.vision->config().kind, "siglip");
}

// Every recipe shipped under recipes/ reads (keys, types and ranges checked).
TEST(Recipes, EveryShippedRecipeReads) {
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(OCELLUS_TESTS_DIR "/../recipes"))
    if (e.path().extension() == ".json") {
      EXPECT_NO_THROW(train::read_recipe(e.path().string())) << e.path();
      ++n;
    }
  EXPECT_GE(n, 16);
}
