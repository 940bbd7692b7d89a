// The "fusion" objective: LlamaFusion (gen/fusion_model.h) trained on captioned images. Every
// image is encoded once by the frozen VAE (its latent mean, scaled); each record is a sample
// twice: generation (caption, BOI, the latent diffused at a random timestep, EOI) and
// understanding (BOI, the clean latent, EOI, the caption).
#include <cmath>
#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/core/progress.h"
#include "ocellus/data/llava_json.h"
#include "ocellus/gen/fusion_model.h"
#include "ocellus/io/file.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/json.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/ops/shape.h"
#include "ocellus/train/trainer.h"

namespace ocellus::train {

namespace {

namespace fs = std::filesystem;

class FusionObjective final : public Objective {
 public:
  explicit FusionObjective(const Recipe& r)
      : r_(r), c_(gen::parse_fusion_config(with_paths(r), r.path)), base_(io::GgufFile::open(r.base)),
        tok_(text::Tokenizer::from_gguf(base_)) {
    const std::string vae_cfg = r.vae + "/config.json";
    OCELLUS_CHECK(io::is_file(vae_cfg), "train: ", r.path, ": 'vae' ", r.vae, " has no config.json (a folder from a 'vae' recipe)");
    vc_ = gen::parse_vae_config(io::read_text_file(vae_cfg), vae_cfg);
    read_data();
    if (r.init.empty()) {
      model_ = std::make_unique<gen::TrainableFusion>(c_, base_, vc_, r.seed);
    } else {  // a further stage: the weights a former one trained
      const std::string st_path = r.init + "/model.safetensors";
      OCELLUS_CHECK(io::is_file(st_path), "train: ", r.path, ": 'init' ", r.init, " has no model.safetensors (a fusion model folder)");
      const io::SafetensorsModel st = io::SafetensorsModel::open(st_path);
      const io::TensorSource src = io::safetensors_source(st, st_path);
      model_ = std::make_unique<gen::TrainableFusion>(c_, base_, vc_, r.seed, &src);
    }
    for (const ag::Var& p : model_->params()) p->requires_grad = r.trains(p->name);
    encode_latents();
  }

  const std::vector<ag::Var>& params() const override { return model_->params(); }
  size_t size() const override { return captions_.size(); }
  int64_t tokens(size_t i) const override { return int64_t(captions_[i].size()) + 2 + model_->unet_config().n_positions(); }

  ag::Var loss(int64_t step, const std::vector<size_t>& idx) override {
    const gen::UNetConfig& u = model_->unet_config();
    const Shape shape{u.latent_size, u.latent_size, u.latent_channels};
    std::vector<gen::FusionSample> batch;
    for (size_t k : idx) {
      gen::FusionSample s;
      s.latent = latents_.slice(0, int64_t(k), int64_t(k) + 1).contiguous().reshape(shape);
      // What a sample draws comes from the seed, the step and the sample (a resumed run draws the same).
      std::seed_seq seq{r_.seed, uint64_t(step), uint64_t(k)};
      std::mt19937_64 rng(seq);
      if (std::uniform_real_distribution<double>(0, 1)(rng) >= r_.understanding) {  // generation
        if (std::uniform_real_distribution<double>(0, 1)(rng) >= r_.cfg_dropout) s.before = captions_[k];
        const int64_t t = std::uniform_int_distribution<int64_t>(0, sched_.train_steps() - 1)(rng);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        s.noise = Tensor::empty(shape);
        for (int64_t e = 0; e < s.noise.numel(); ++e) s.noise.data<float>()[e] = normal(rng);
        s.latent = sched_.add_noise(s.latent.reshape({1, shape[0], shape[1], shape[2]}), s.noise.reshape({1, shape[0], shape[1], shape[2]}), {t})
                       .reshape(shape);
        s.timestep = float(t);
      } else {
        s.after = captions_after_[k];
      }
      batch.push_back(std::move(s));
    }
    return model_->loss(batch, float(r_.image_loss_weight), &ce_, &mse_);
  }

  void log_fields(nlohmann::json& line, int64_t) const override { line["ce"] = ce_, line["mse"] = mse_; }

  // out/model: the image side (and any text that trained), the VAE copied beside it as vae/, the
  // base named relative to the folder.
  void export_model(const std::string& out, TrainResult& res) const override {
    res.model_dir = out + "/model";
    gen::FusionConfig c = c_;
    fs::create_directories(res.model_dir + "/vae");
    for (const char* f : {"config.json", "model.safetensors"})
      fs::copy_file(r_.vae + "/" + f, res.model_dir + "/vae/" + f, fs::copy_options::overwrite_existing);
    c.vae = "vae";
    c.base = fs::relative(fs::absolute(r_.base), fs::absolute(res.model_dir)).string();
    model_->save(res.model_dir, c, r_.export_dtype);
  }

 private:
  // The recipe's "model" with the paths it does not hold (base and vae come from the recipe).
  static std::string with_paths(const Recipe& r) {
    nlohmann::json j = r.model_config.empty() ? nlohmann::json::object() : io::parse_json(r.model_config, r.path, "fusion model config");
    OCELLUS_CHECK(!j.contains("base") && !j.contains("vae"), "train: ", r.path, ": the fusion model's base and vae are the recipe's ",
                  "'base' and 'vae', not keys of 'model'");
    j["base"] = r.base, j["vae"] = r.vae;
    return j.dump();
  }

  // Each record's image and caption (its last assistant reply).
  void read_data() {
    std::vector<std::string> skipped, paths, captions;
    for (const data::Record& rec : data::read_llava_json(r_.data, r_.on_bad, &skipped)) {
      std::string caption;
      for (const text::Message& m : rec.messages)
        if (m.role == "assistant") caption = m.content;
      if (rec.image.empty() || caption.empty()) {
        OCELLUS_CHECK(r_.on_bad == data::OnBad::Skip, "train: ", r_.data, ": record '", rec.id, "' has no image or no caption");
        skipped.push_back("record '" + rec.id + "': no image or no caption");
        continue;
      }
      paths.push_back(r_.images.empty() ? rec.image : r_.images + "/" + rec.image);
      captions.push_back(caption);
    }
    const int64_t S = vc_.sample_size, C = vc_.in_channels;
    std::vector<float> pixels;
    for_each_image(r_, paths, "train", skipped, [&](size_t i, const io::ImageRgb8& img) {
      OCELLUS_CHECK(img.width == S && img.height == S, paths[i], ": ", img.width, "x", img.height, ", the VAE reads ", S, "x", S);
      for (size_t p = 0; p < size_t(S * S); ++p) {
        const uint8_t* px = &img.rgb[3 * p];
        if (C == 1) pixels.push_back(float(int(px[0]) + px[1] + px[2]) / 3.0f / 127.5f - 1.0f);
        else for (int64_t c = 0; c < C; ++c) pixels.push_back(float(px[c]) / 127.5f - 1.0f);
      }
      captions_.push_back(gen::caption_before(tok_, captions[i]));
      captions_after_.push_back(gen::caption_after(tok_, captions[i]));
    });
    report_skipped(skipped);
    OCELLUS_CHECK(!captions_.empty(), "train: ", r_.data, ": no captioned images");
    images_ = Tensor::empty({int64_t(captions_.size()), S, S, C});
    std::copy(pixels.begin(), pixels.end(), images_.data<float>());
  }

  // The latents of every image by the frozen VAE (the posterior's mean, scaled), once.
  void encode_latents() {
    const io::SafetensorsModel st = io::SafetensorsModel::open(r_.vae + "/model.safetensors");
    const gen::Vae<nn::Infer> vae = gen::load_vae(nn::f32_file_maker(io::safetensors_source(st, r_.vae + "/model.safetensors"), "vae"), vc_);
    sched_ = gen::NoiseSchedule(c_.train_steps, c_.beta_start, c_.beta_end);
    const int64_t n = images_.dim(0);
    std::vector<Tensor> parts;
    ProgressLine progress;
    for (int64_t a = 0; a < n; a += 64) {
      const int64_t b = std::min(n, a + 64);
      parts.push_back(gen::vae_latents(vc_, vae, images_.slice(0, a, b).contiguous()));
      progress.update(b, n, "train: latents of the images by the VAE");
    }
    latents_ = ops::concat(parts, 0);
    images_ = Tensor();  // the pixels are not needed again
  }

  const Recipe& r_;
  const gen::FusionConfig c_;
  const io::GgufFile base_;
  const text::Tokenizer tok_;
  gen::VaeConfig vc_;
  gen::NoiseSchedule sched_;
  std::vector<std::vector<int32_t>> captions_, captions_after_;
  Tensor images_, latents_;  // [n, S, S, C] in [-1, 1] until encoded; [n, h, h, latent]
  std::unique_ptr<gen::TrainableFusion> model_;
  float ce_ = 0, mse_ = 0;  // of the last batch
};

}  // namespace

std::unique_ptr<Objective> fusion_objective(const Recipe& r) { return std::make_unique<FusionObjective>(r); }

}  // namespace ocellus::train
