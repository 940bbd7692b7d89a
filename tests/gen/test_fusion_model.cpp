// LlamaFusion's whole model (gen/fusion_model.h): training's forward equals inference's on the
// saved files in both directions, text alone gives the base model's logits bit for bit (and a
// Transfusion-style model, whose text trained, does not), and bad input is one clear error.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "ocellus/core/error.h"
#include "ocellus/gen/fusion_model.h"
#include "ocellus/io/file.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/model/synth.h"
#include "ocellus/ops/shape.h"
#include <nlohmann/json.hpp>
#include "testutil.h"
#include "torch_ref.h"

using namespace ocellus;
using namespace ocellus::test;

namespace {

// A tiny llama base (synth, f32), a new VAE of 8 px images with 4x4 latents of 2 channels, and
// a fusion config with a 2x2 grid of image positions.
struct FusionFiles {
  std::string dir, base, vae;
  gen::VaeConfig vc;
  gen::FusionConfig fc;
};

FusionFiles setup(const std::string& name) {
  FusionFiles s;
  s.dir = temp_path(name);
  std::filesystem::remove_all(s.dir);
  std::filesystem::create_directories(s.dir + "/vae");
  s.base = s.dir + "/base.gguf", s.vae = s.dir + "/vae";
  model::SynthOptions o;
  o.dtype = DType::F32;
  model::write_synth_model(model::synth_shape("tiny-llama"), o, s.base);
  s.vc.in_channels = 1, s.vc.latent_channels = 2, s.vc.block_out_channels = {8, 8}, s.vc.norm_num_groups = 4, s.vc.sample_size = 8;
  std::vector<ag::Var> vp;
  gen::load_vae(nn::new_param_maker(vp, 5), s.vc);
  perturb(vp, 300);
  io::write_text_file_atomically(s.vae + "/config.json", gen::vae_config_json(s.vc));
  io::write_safetensors(s.vae + "/model.safetensors", ag::named_values(vp));
  s.fc.base = "base.gguf", s.fc.vae = "vae", s.fc.block_out_channels = {8, 16}, s.fc.norm_num_groups = 4;
  return s;
}

// The model trained from the base with its image side moved off its start (the text frozen
// unless it trains too), saved as dir/model.
std::unique_ptr<gen::TrainableFusion> trained(const FusionFiles& s, bool text_trains) {
  const io::GgufFile g = io::GgufFile::open(s.base);
  auto m = std::make_unique<gen::TrainableFusion>(s.fc, g, s.vc, 7);
  std::vector<ag::Var> moved;
  for (const ag::Var& p : m->params()) {
    const bool image = p->name.starts_with("image.");
    p->requires_grad = image || text_trains;
    if (p->requires_grad) moved.push_back(p);
  }
  perturb(moved, 500, 0.05f);
  gen::FusionConfig written = s.fc;
  written.base = "../base.gguf", written.vae = "../vae";
  m->save(s.dir + "/model", written);
  return m;
}

gen::FusionSample generation(const gen::UNetConfig& u, uint32_t seed) {
  gen::FusionSample g;
  g.before = {5, 9, 17};
  g.latent = randn({u.latent_size, u.latent_size, u.latent_channels}, seed);
  g.timestep = 417;
  g.noise = randn(g.latent.shape(), seed + 1);
  return g;
}

gen::FusionSample understanding(const gen::UNetConfig& u, uint32_t seed) {
  gen::FusionSample d;
  d.after = {3, 4, 8};
  d.latent = randn({u.latent_size, u.latent_size, u.latent_channels}, seed);
  return d;
}

Tensor row(const Tensor& t, int64_t i) { return t.slice(0, i, i + 1).contiguous(); }

}  // namespace

TEST(FusionModel, TrainingForwardEqualsInferenceInBothDirections) {
  const FusionFiles s = setup("fusion_model_both");
  const auto tm = trained(s, false);
  const gen::UNetConfig& u = tm->unet_config();
  const int64_t P = u.n_positions();
  ASSERT_EQ(P, 4);
  const gen::FusionSample g = generation(u, 1), d = understanding(u, 3);
  const gen::TrainableFusion::Outputs o = tm->forward({g, d});

  const gen::FusionModel m(s.dir + "/model");
  ASSERT_EQ(m.image_rows(), P);
  // Generation: the caption in the cache, then the noisy image's positions: the predicted noise.
  lm::KvCache c = m.cache(3 + 1 + P);
  const Tensor text_logits = m.push_text(g.before, c);
  EXPECT_LE(rel_err(text_logits, row(o.logits->value, 2)), 1e-6);
  m.push_marker(true, c);
  const Tensor eps = m.predict_noise(g.latent.reshape({1, u.latent_size, u.latent_size, u.latent_channels}), g.timestep, c);
  const double e_gen = rel_err(eps, o.noise->value.slice(0, 0, 1).contiguous());
  EXPECT_LE(e_gen, 1e-6);
  // Understanding: BOI, the clean image in the cache, EOI and the caption's first two tokens: the
  // last row's logits (they predict the third).
  lm::KvCache c2 = m.cache(1 + P + 1 + 3);
  m.push_marker(true, c2);
  m.push_image(d.latent.reshape({1, u.latent_size, u.latent_size, u.latent_channels}), c2);
  const Tensor und = m.push_text({3, 4}, c2, true);
  const int64_t first = 3 + 1 + P + 1;  // the second sequence's first row
  const double e_und = rel_err(und, row(o.logits->value, first + 1 + P + 2));
  EXPECT_LE(e_und, 1e-6);
  std::printf("training vs inference: predicted noise %.2e, caption logits %.2e\n", e_gen, e_und);
  // The image side matters: the same caption logits without the image differ.
  lm::KvCache c3 = m.cache(8);
  m.push_marker(true, c3);
  EXPECT_GT(rel_err(m.push_text({3, 4}, c3, true), und), 1e-3);
}

TEST(FusionModel, TextAloneIsTheBaseModelBitForBitUnlessTheTextTrained) {
  const std::vector<int32_t> ids = {1, 7, 42, 300, 11, 5};
  const io::GgufFile g0 = io::GgufFile::open(setup("fusion_model_text_probe").base);  // the same synth base
  const auto base = lm::load_gguf(g0);
  lm::KvCache cb(base->config(), 16, DType::F32);
  const Tensor want = base->forward_ids(ids, cb, false);
  for (const bool text_trains : {false, true}) {
    FusionFiles s = setup(text_trains ? "fusion_model_transfusion" : "fusion_model_text");
    s.fc.modality_specific = !text_trains;  // Transfusion: one set of modules, all trained
    trained(s, text_trains);
    const gen::FusionModel m(s.dir + "/model");
    lm::KvCache c = m.cache(16);
    const Tensor got = m.push_text(ids, c);
    ASSERT_EQ(got.shape(), want.shape());
    const bool same = std::memcmp(got.raw(), want.raw(), size_t(want.nbytes())) == 0;
    EXPECT_EQ(same, !text_trains) << (text_trains ? "Transfusion" : "LlamaFusion") << " rel " << rel_err(got, want);
  }
}

TEST(FusionModel, SavedAt16BitsDrawsAsTheF32Model) {
  // The shipped folders store matrices and kernels at f16 (export_dtype): half the bytes, the
  // same model to f16's rounding.
  const FusionFiles s = setup("fusion_model_f16");
  const auto tm = trained(s, false);
  gen::FusionConfig written = s.fc;
  written.base = "../base.gguf", written.vae = "../vae16";
  tm->save(s.dir + "/model16", written, DType::F16);
  std::filesystem::create_directories(s.dir + "/vae16");
  std::filesystem::copy_file(s.vae + "/config.json", s.dir + "/vae16/config.json");
  const io::SafetensorsModel vae32 = io::SafetensorsModel::open(s.vae + "/model.safetensors");
  std::vector<std::pair<std::string, Tensor>> vae_tensors;
  for (const std::string& n : vae32.names()) vae_tensors.emplace_back(n, vae32.tensor(n));
  io::write_safetensors(s.dir + "/vae16/model.safetensors", io::matrices_as(vae_tensors, DType::F16));

  const io::SafetensorsModel st = io::SafetensorsModel::open(s.dir + "/model16/model.safetensors");
  int matrices = 0;
  for (const std::string& n : st.names()) {
    const Tensor t = st.tensor(n);
    EXPECT_EQ(t.dtype(), t.ndim() >= 2 ? DType::F16 : DType::F32) << n;
    matrices += t.ndim() >= 2;
  }
  EXPECT_GT(matrices, 10);
  EXPECT_LT(std::filesystem::file_size(s.dir + "/model16/model.safetensors"),
            0.55 * double(std::filesystem::file_size(s.dir + "/model/model.safetensors")));

  const gen::FusionModel m32(s.dir + "/model"), m16(s.dir + "/model16");
  const gen::UNetConfig& u = m32.unet_config();
  const Tensor latent = randn({1, u.latent_size, u.latent_size, u.latent_channels}, 9);
  auto noise = [&](const gen::FusionModel& m) {
    lm::KvCache c = m.cache(3 + 1 + m.image_rows());
    m.push_text({5, 9, 17}, c);
    m.push_marker(true, c);
    return m.predict_noise(latent, 417, c);
  };
  const double e_noise = rel_err(noise(m16), noise(m32));
  const double e_image = rel_err(m16.decode(latent), m32.decode(latent));
  std::printf("f16 folder vs f32: predicted noise %.2e, decoded image %.2e\n", e_noise, e_image);
  // f16 keeps 11 significant bits (relative rounding 4.9e-4 per weight); measured 8.6e-4 and
  // 5.8e-4 on an Intel Xeon (AVX-512 VNNI): bound about 6x
  EXPECT_LE(e_noise, 5e-3);
  EXPECT_LE(e_image, 5e-3);
  EXPECT_GT(e_noise, 0.0);  // the f16 weights were read, not the f32 ones
}

TEST(FusionModel, BadInputIsOneClearError) {
  EXPECT_THROW(gen::parse_fusion_config(R"({"base": "b.gguf"})", "cfg"), Error);  // no vae
  EXPECT_THROW(gen::parse_fusion_config(R"({"base": "b.gguf", "vae": "v", "layers": 2})", "cfg"), Error);
  EXPECT_THROW(gen::parse_fusion_config(R"({"model_type": "llava", "base": "b.gguf", "vae": "v"})", "cfg"), Error);
  const gen::FusionConfig c = gen::parse_fusion_config(R"({"base": "b.gguf", "vae": "v", "modality_specific": false})", "cfg");
  EXPECT_FALSE(c.modality_specific);
  EXPECT_EQ(gen::parse_fusion_config(gen::fusion_config_json(c), "again").block_out_channels, c.block_out_channels);
  EXPECT_THROW(gen::FusionModel(temp_path("no_such_fusion_model")), Error);
  const FusionFiles s = setup("fusion_model_errors");
  trained(s, false);
  const gen::FusionModel m(s.dir + "/model");
  gen::ImageSampling o;
  o.steps = 0;
  EXPECT_THROW(gen::generate_image(m, "a bag in the top left", o), Error);
  o.steps = 2;
  const Tensor img = gen::generate_image(m, "a bag in the top left", o);
  EXPECT_EQ(img.shape(), Shape({8, 8, 1}));
}

TEST(FusionModel, TrainingStepMatchesPyTorch) {
  const FusionFiles s = setup("fusion_model_step");
  const io::GgufFile g = io::GgufFile::open(s.base);
  gen::TrainableFusion tm(s.fc, g, s.vc, 7);
  std::vector<ag::Var> image, text;
  for (const ag::Var& p : tm.params()) {
    p->requires_grad = p->name.starts_with("image.");  // LlamaFusion: the text frozen
    (p->requires_grad ? image : text).push_back(p);
  }
  perturb(image, 700, 0.05f);
  const gen::UNetConfig& u = tm.unet_config();
  const lm::LmConfig& lc = tm.lm_config();
  ASSERT_EQ(lc.rope.mode, ops::RopeMode::Adjacent);
  ASSERT_EQ(lc.rope.n_rot, lc.head_dim);
  // A captioned generation, an understanding, and a generation with its caption dropped.
  gen::FusionSample a = generation(u, 1), b = understanding(u, 3), c = generation(u, 5);
  c.before.clear(), c.timestep = 31;
  const float lambda = 5.0f;
  const ag::Var loss = tm.loss({a, b, c}, lambda);
  ag::Tape::current().backward(loss);

  const std::string dir = s.dir + "/step";
  std::filesystem::create_directories(dir);
  nlohmann::json samples = nlohmann::json::array();
  for (const gen::FusionSample* x : {&a, &b, &c})
    samples.push_back({{"before", x->before}, {"after", x->after}, {"timestep", x->timestep}, {"diffused", x->noise.defined()}});
  const nlohmann::json cfg = {{"n_layer", lc.n_layer}, {"n_head", lc.n_head}, {"n_head_kv", lc.n_head_kv}, {"head_dim", lc.head_dim},
                              {"eps", lc.norm_eps}, {"theta", lc.rope.theta}, {"image_weight", lambda}, {"samples", samples},
                              {"unet", {{"latent_size", u.latent_size}, {"latent_channels", u.latent_channels},
                                        {"block_out_channels", u.block_out_channels}, {"norm_num_groups", u.norm_num_groups}}}};
  io::write_text_file_atomically(dir + "/config.json", cfg.dump());
  io::write_safetensors(dir + "/model.safetensors", ag::named_values(image));
  io::write_safetensors(dir + "/text.safetensors", ag::named_values(text));
  const Shape one{1, u.latent_size, u.latent_size, u.latent_channels};
  const Tensor lat = ops::concat({a.latent.reshape(one), b.latent.reshape(one), c.latent.reshape(one)}, 0);
  const Tensor noise = ops::concat({a.noise.reshape(one), Tensor::zeros(one), c.noise.reshape(one)}, 0);
  const std::vector<float> ref = torch_ref({"fusion", dir, write_temp("fusion_lat.f32", lat), write_temp("fusion_noise.f32", noise), ""},
                                           dir + "/out.f32");
  expect_step_matches(loss, image, ref, 2e-6);  // worst gradient 1.1e-06 (text frozen, float64 reference)
}
