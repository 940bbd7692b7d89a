// Objectives that train an image model from scratch: the VAE of latent diffusion (gen/vae.h) on
// the images of LLaVA JSON records, and a CNN classifier (vision/cnn_classifier.h) on labelled
// photos in IDX files (the MNIST family's format).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/data/fashion_vqa.h"
#include "ocellus/data/llava_json.h"
#include "ocellus/gen/vae.h"
#include "ocellus/io/file.h"
#include "ocellus/io/image.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/ops/loss.h"
#include "ocellus/train/dist.h"
#include "ocellus/train/trainer.h"
#include "ocellus/vision/cnn_classifier.h"

namespace ocellus::train {

namespace {

// 8-bit images of one square size, held once; a batch of them as floats in [-1, 1].
struct ImageSet {
  int64_t side = 0, channels = 0;
  std::vector<uint8_t> pixels;  // [n, side, side, channels]

  size_t size() const { return side ? pixels.size() / size_t(side * side * channels) : 0; }
  Tensor batch(const std::vector<size_t>& idx) const {
    const int64_t per = side * side * channels;
    Tensor t = Tensor::empty({int64_t(idx.size()), side, side, channels});
    for (size_t b = 0; b < idx.size(); ++b)
      for (int64_t i = 0; i < per; ++i)
        t.data<float>()[int64_t(b) * per + i] = float(pixels[idx[b] * size_t(per) + size_t(i)]) / 127.5f - 1.0f;
    return t;
  }
};

// The images of the recipe's records, each decoded once (grayscale: the mean of R, G, B); a
// missing or broken one is skipped when the recipe says so, else an error naming it.
ImageSet record_images(const Recipe& r, int64_t channels) {
  std::vector<std::string> skipped, paths;
  for (const data::Record& rec : data::read_llava_json(r.data, r.on_bad, &skipped))
    if (!rec.image.empty()) paths.push_back(r.images.empty() ? rec.image : r.images + "/" + rec.image);
  ImageSet set;
  set.channels = channels;
  for_each_image(r, paths, "train", skipped, [&](size_t i, const io::ImageRgb8& img) {
    OCELLUS_CHECK(img.width == img.height, paths[i], ": ", img.width, "x", img.height, " is not square");
    if (set.side == 0) set.side = img.width;
    OCELLUS_CHECK(img.width == set.side, paths[i], ": ", img.width, " px, the data's first image has ", set.side);
    for (size_t p = 0; p < size_t(img.width) * size_t(img.height); ++p) {
      const uint8_t* px = &img.rgb[3 * p];
      if (channels == 1) set.pixels.push_back(uint8_t((int(px[0]) + px[1] + px[2] + 1) / 3));
      else set.pixels.insert(set.pixels.end(), px, px + channels);
    }
  });
  report_skipped(skipped);
  OCELLUS_CHECK(set.size() > 0, "train: ", r.data, ": no images");
  return set;
}

// Writes the model folder: config.json and model.safetensors (atomically each), the matrices and
// kernels at `dtype`.
void write_model_folder(const std::string& dir, const std::string& config_json, const std::vector<ag::Var>& params, DType dtype) {
  std::filesystem::create_directories(dir);
  io::write_text_file_atomically(dir + "/config.json", config_json);
  io::write_safetensors(dir + "/model.safetensors", io::matrices_as(ag::named_values(params), dtype));
}

// Standard normal noise for a step's samples, drawn from the seed, the step and the samples, so
// that a resumed run draws the same.
Tensor step_noise(const Shape& shape, uint64_t seed, int64_t step, const std::vector<size_t>& idx) {
  std::seed_seq seq{seed, uint64_t(step), uint64_t(idx.empty() ? 0 : idx.front()), uint64_t(idx.size())};
  std::mt19937_64 rng(seq);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

class VaeObjective final : public Objective {
 public:
  explicit VaeObjective(const Recipe& r) : r_(r), c_(gen::parse_vae_config(r.model_config.empty() ? "{}" : r.model_config, r.path)) {
    images_ = record_images(r, c_.in_channels);
    OCELLUS_CHECK(images_.side == c_.sample_size, "train: ", r.path, ": the images are ", images_.side, " px, the VAE's ",
                  "sample_size is ", c_.sample_size);
    w_ = gen::load_vae(nn::new_param_maker(params_, r.seed), c_);
  }

  const std::vector<ag::Var>& params() const override { return params_; }
  size_t size() const override { return images_.size(); }
  int64_t tokens(size_t) const override { return images_.side * images_.side; }  // pixels

  ag::Var loss(int64_t step, const std::vector<size_t>& idx) override {
    const int64_t h = c_.latent_size();
    const Tensor noise = step_noise({int64_t(idx.size()), h, h, c_.latent_channels}, r_.seed, step, idx);
    return gen::vae_loss(c_, w_, images_.batch(idx), noise, float(r_.kl_weight), &recon_, &kl_);
  }

  void log_fields(nlohmann::json& line, int64_t) const override { line["recon"] = recon_, line["kl"] = kl_; }

  // The folder, with scaling_factor set so that the means of the training images' latents have
  // unit variance (diffusers' convention; measured on up to 512 of them).
  void export_model(const std::string& out, TrainResult& res) const override {
    gen::VaeConfig c = c_;
    const ag::NoGrad no_grad;
    double s = 0, ss = 0;
    int64_t n = 0;
    for (size_t a = 0; a < std::min<size_t>(images_.size(), 512); a += 32) {
      std::vector<size_t> idx;
      for (size_t i = a; i < std::min<size_t>({images_.size(), a + 32, 512}); ++i) idx.push_back(i);
      const ag::Var m = gen::vae_encode(nn::Train{}, c, w_, ag::constant(images_.batch(idx)));
      const Tensor mean = m->value.slice(3, 0, c.latent_channels).contiguous();
      for (int64_t i = 0; i < mean.numel(); ++i) s += mean.data<float>()[i], ss += double(mean.data<float>()[i]) * mean.data<float>()[i];
      n += mean.numel();
    }
    const double var = ss / double(n) - (s / double(n)) * (s / double(n));
    c.scaling_factor = var > 0 ? 1.0 / std::sqrt(var) : 1.0;
    res.model_dir = out + "/model";
    write_model_folder(res.model_dir, gen::vae_config_json(c), params_, r_.export_dtype);
  }

 private:
  const Recipe& r_;
  const gen::VaeConfig c_;
  ImageSet images_;
  std::vector<ag::Var> params_;
  gen::Vae<nn::Train> w_;
  float recon_ = 0, kl_ = 0;  // of the last batch
};

class ClassifierObjective final : public Objective {
 public:
  explicit ClassifierObjective(const Recipe& r)
      : c_(vision::parse_cnn_config(r.model_config.empty() ? "{}" : r.model_config, r.path)), dtype_(r.export_dtype) {
    const data::FashionSplit s = data::read_fashion_split(r.data, r.labels);
    OCELLUS_CHECK(c_.in_channels == 1 && c_.image_size == 28 && c_.n_classes >= 10, "train: ", r.path, ": the photos are 28x28 ",
                  "grayscale in 10 classes; the classifier reads ", c_.image_size, " px, ", c_.in_channels, " channel(s), ",
                  c_.n_classes, " classes");
    images_.side = 28, images_.channels = 1, images_.pixels = s.pixels;
    labels_.assign(s.labels.begin(), s.labels.end());
    w_ = vision::load_cnn_classifier(nn::new_param_maker(params_, r.seed), c_);
  }

  const std::vector<ag::Var>& params() const override { return params_; }
  size_t size() const override { return images_.size(); }
  int64_t tokens(size_t) const override { return 1; }  // images

  ag::Var loss(int64_t, const std::vector<size_t>& idx) override {
    const nn::Train f;
    const ag::Var logits = vision::cnn_logits(f, w_, vision::cnn_features(f, c_, w_, ag::constant(images_.batch(idx))));
    std::vector<int32_t> y;
    int64_t right = 0;
    for (size_t b = 0; b < idx.size(); ++b) {
      y.push_back(labels_[idx[b]]);
      const float* row = logits->value.data<float>() + int64_t(b) * c_.n_classes;
      right += std::max_element(row, row + c_.n_classes) - row == y.back();
    }
    accuracy_ = double(right) / double(idx.size());
    return ag::cross_entropy(logits, y);
  }

  void log_fields(nlohmann::json& line, int64_t) const override { line["batch_accuracy"] = accuracy_; }

  void export_model(const std::string& out, TrainResult& res) const override {
    res.model_dir = out + "/model";
    write_model_folder(res.model_dir, vision::cnn_config_json(c_), params_, dtype_);
  }

 private:
  const vision::CnnConfig c_;
  const DType dtype_;  // the exported model's matrices and kernels
  ImageSet images_;
  std::vector<int32_t> labels_;
  std::vector<ag::Var> params_;
  vision::CnnClassifier<nn::Train> w_;
  double accuracy_ = 0;  // of the last batch
};

}  // namespace

std::unique_ptr<Objective> vae_objective(const Recipe& r) { return std::make_unique<VaeObjective>(r); }
std::unique_ptr<Objective> classifier_objective(const Recipe& r) { return std::make_unique<ClassifierObjective>(r); }

}  // namespace ocellus::train
