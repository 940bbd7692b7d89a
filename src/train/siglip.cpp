#include "ocellus/train/siglip.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <random>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/core/progress.h"
#include "ocellus/core/threads.h"
#include "ocellus/io/file.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/image.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/model/export.h"
#include "ocellus/model/vlm_train.h"
#include "ocellus/text/tokenizer.h"
#include "ocellus/data/llava_json.h"
#include "ocellus/train/dist.h"
#include "ocellus/vision/preprocess.h"

namespace ocellus::train {

using json = nlohmann::json;

ag::Var SiglipModel::add(const std::string& name, Tensor value) {
  ag::Var v = ag::leaf(std::move(value), true, name);
  params_.push_back(v);
  return v;
}

SiglipModel::SiglipModel(const vision::VitConfig& vc, const io::TensorSource& s_in, int64_t n_vocab, const SiglipOptions& o,
                         uint64_t seed)
    : vc_(vc), o_(o) {
  OCELLUS_CHECK(!vc.class_token, "siglip: the tower has a class token (CLIP-style); SigLIP pretraining here trains SigLIP-style "
                "towers (patch bias, no class token)");
  OCELLUS_CHECK(o.text_embd % o.text_heads == 0, "siglip: text_embd must divide into text_heads heads");
  const std::string pre = "vision_tower.vision_model.";
  const io::TensorSource s = io::renamed_source(s_in, {{pre, vision::find_hf_vit_prefix(s_in)}});
  const vision::VitNames n = vision::hf_vit_names(pre);
  const int64_t d = vc.n_embd;
  // Every block and the post-LayerNorm train, whatever the feature layer the VLM reads.
  vc_.n_layer_run = vc.n_layer, vc_.post_norm = true;
  tower_ = vision::load_vit(nn::param_maker(s, "siglip", &params_, &file_names_), vc_, n);
  // The text tower and heads: new, initialized as transformers does (normal 0.02, LayerNorms at
  // ones, biases zero).
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + 0x5167);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  auto fresh = [&](const std::string& name, const Shape& shape, float fill) {  // fill < 0: normal
    Tensor t = Tensor::empty(shape);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = fill < 0 ? normal(rng) : fill;
    return add(name, t);
  };
  const int64_t dt = o.text_embd;
  tok_ = fresh("siglip.text.token_embedding.weight", {n_vocab, dt}, -1);
  tpos_ = fresh("siglip.text.position_embedding.weight", {o.max_text_len, dt}, -1);
  // The text tower's blocks: the same encoder block, fresh (LayerNorm weights 1, biases 0).
  nn::Maker<nn::Train> fresh_mk;
  fresh_mk.tensor = [&](const std::string& name, const Shape& shape, bool) {
    const bool ln = name.find("layer_norm") != std::string::npos, bias = name.size() > 5 && name.ends_with(".bias");
    return fresh(name, shape, bias ? 0.0f : ln ? 1.0f : -1.0f);
  };
  fresh_mk.matrix = [&](const std::string& name, const Shape& shape) { return fresh_mk.tensor(name, shape, true); };
  vision::EncoderBlockNames tn;
  const std::string l = "siglip.text.layers.%d.";
  tn.ln1_w = l + "layer_norm1.weight", tn.ln1_b = l + "layer_norm1.bias", tn.ln2_w = l + "layer_norm2.weight";
  tn.ln2_b = l + "layer_norm2.bias", tn.q = l + "q_proj.weight", tn.q_b = l + "q_proj.bias", tn.k = l + "k_proj.weight";
  tn.k_b = l + "k_proj.bias", tn.v = l + "v_proj.weight", tn.v_b = l + "v_proj.bias", tn.o = l + "out_proj.weight";
  tn.o_b = l + "out_proj.bias", tn.fc1 = l + "fc1.weight", tn.fc1_b = l + "fc1.bias", tn.fc2 = l + "fc2.weight";
  tn.fc2_b = l + "fc2.bias";
  for (int64_t i = 0; i < o.text_layers; ++i) tblocks_.push_back(vision::load_encoder_block(fresh_mk, tn, i, dt, o.text_ff));
  tnorm_w_ = fresh("siglip.text.final_layer_norm.weight", {dt}, 1), tnorm_b_ = fresh("siglip.text.final_layer_norm.bias", {dt}, 0);
  vhead_w_ = fresh("siglip.vision_head.weight", {o.embed_dim, d}, -1), vhead_b_ = fresh("siglip.vision_head.bias", {o.embed_dim}, 0);
  thead_w_ = fresh("siglip.text_head.weight", {o.embed_dim, dt}, -1), thead_b_ = fresh("siglip.text_head.bias", {o.embed_dim}, 0);
  log_scale_ = fresh("siglip.logit_scale", {1}, float(std::log(10.0)));
  bias_ = fresh("siglip.logit_bias", {1}, 0);
  bias_->value.data<float>()[0] = -10.0f;
}

ag::Var SiglipModel::image_embeddings(const std::vector<Tensor>& pixels) const {
  const nn::Train f;
  const ag::Var h = vision::vit_blocks(f, vc_, tower_.blocks, vision::vit_embeddings(f, vc_, tower_, pixels));
  std::vector<int64_t> starts;
  for (int64_t i = 0; i <= int64_t(pixels.size()); ++i) starts.push_back(i * vc_.n_patches());
  const ag::Var features = vision::vit_features(f, vc_, h, tower_.post_ln_w, tower_.post_ln_b);  // [B * n_patches, d]
  return ag::matmul(ag::segment_mean(features, starts), vhead_w_, vhead_b_);
}

ag::Var SiglipModel::text_embeddings(const std::vector<std::vector<int32_t>>& ids) const {
  OCELLUS_CHECK(!ids.empty(), "siglip: no captions");
  std::vector<int32_t> all, pos;
  std::vector<int64_t> starts{0};
  for (const std::vector<int32_t>& s : ids) {
    OCELLUS_CHECK(!s.empty(), "siglip: an empty caption");
    const size_t n = std::min(s.size(), size_t(o_.max_text_len));
    for (size_t i = 0; i < n; ++i) all.push_back(s[i]), pos.push_back(int32_t(i));
    starts.push_back(int64_t(all.size()));
  }
  ag::Var h = ag::add(ag::embedding(tok_, all), ag::embedding(tpos_, pos));
  for (const vision::EncoderBlock<nn::Train>& b : tblocks_) h = vision::encoder_block(nn::Train{}, b, h, {o_.text_heads, vc_.act, 1e-6f}, starts);
  h = ag::layer_norm(h, tnorm_w_, tnorm_b_, 1e-6f);
  return ag::matmul(ag::segment_mean(h, starts), thead_w_, thead_b_);
}

ag::Var SiglipModel::loss(const std::vector<Tensor>& pixels, const std::vector<std::vector<int32_t>>& ids) const {
  OCELLUS_CHECK(pixels.size() == ids.size(), "siglip: ", pixels.size(), " images and ", ids.size(), " captions");
  return ag::sigmoid_pair_loss(image_embeddings(pixels), text_embeddings(ids), log_scale_, bias_);
}

namespace {

// The fraction of images whose own caption scores highest among the batch's (retrieval top-1).
double batch_accuracy(const Tensor& zi, const Tensor& zt) {
  const int64_t n = zi.dim(0), e = zi.dim(1);
  int64_t right = 0;
  for (int64_t i = 0; i < n; ++i) {
    double best = -1e300;
    int64_t arg = -1;
    for (int64_t j = 0; j < n; ++j) {
      double c = 0, nj = 0;
      for (int64_t k = 0; k < e; ++k) c += double(zi.data<float>()[i * e + k]) * zt.data<float>()[j * e + k], nj += double(zt.data<float>()[j * e + k]) * zt.data<float>()[j * e + k];
      c /= std::sqrt(std::max(nj, 1e-24));
      if (c > best) best = c, arg = j;
    }
    right += arg == i;
  }
  return double(right) / double(n);
}

}  // namespace

void SiglipModel::export_folder(const std::string& base_dir, const std::string& dir, const std::string& heads_path) const {
  // The base folder with the trained tower; the text tower and heads beside it.
  std::map<std::string, Tensor> trained;
  std::vector<std::pair<std::string, Tensor>> heads;
  for (const ag::Var& p : params_) {
    if (p->name.starts_with("siglip.")) {
      heads.push_back({p->name, p->value});
      continue;
    }
    trained[file_names_.at(p->name)] = p->value;
  }
  model::export_hf_folder(base_dir, trained, dir);
  io::write_safetensors(heads_path, heads);
}

namespace {

const Recipe& checked_siglip_recipe(const Recipe& r) {
  OCELLUS_CHECK(dist().size == 1, "train: SigLIP pretraining runs in one process (its loss pairs every image with every caption "
                "of the batch)");
  OCELLUS_CHECK(r.lora_rank == 0 && r.tower_from < 0 && r.cache.empty(), "train: ", r.path,
                ": a SigLIP recipe trains the whole tower from the images: no 'lora', 'tower_from' or 'cache'");
  return r;
}

// Image / caption pairs: each record's image and its assistant text (the caption); the tower and
// the text tower trained together on them.
class SiglipObjective final : public Objective {
 public:
  explicit SiglipObjective(const Recipe& r)
      : r_(checked_siglip_recipe(r)), tok_(text::Tokenizer::from_file(r.base)), st_(io::SafetensorsModel::open(r.base)),
        vc_(model::train_config_from_hf(io::read_hf_config(r.base)).vit),
        m_(vc_, io::safetensors_source(st_, r.base), tok_.n_vocab(), r.siglip, r.seed) {
    read_pairs();
    for (const ag::Var& p : m_.params())
      // The tower trains as the recipe says; the text tower and heads always do (nothing else uses them).
      p->requires_grad = p->name.starts_with("siglip.") || r.trains(p->name);
  }

  const std::vector<ag::Var>& params() const override { return m_.params(); }
  size_t size() const override { return pixels_.size(); }
  int64_t tokens(size_t i) const override {
    return vc_.n_patches() + std::min<int64_t>(int64_t(captions_[i].size()), r_.siglip.max_text_len);
  }
  bool separable() const override { return false; }  // every image against every caption of the batch

  ag::Var loss(int64_t, const std::vector<size_t>& idx) override {
    std::vector<Tensor> px;
    std::vector<std::vector<int32_t>> ids;
    for (size_t i : idx) px.push_back(pixels_[i]), ids.push_back(captions_[i]);
    const ag::Var zi = m_.image_embeddings(px), zt = m_.text_embeddings(ids);
    accuracy_ = batch_accuracy(zi->value, zt->value);
    return ag::sigmoid_pair_loss(zi, zt, m_.param("siglip.logit_scale"), m_.param("siglip.logit_bias"));
  }

  void log_fields(json& line, int64_t) const override {
    line["batch_accuracy"] = accuracy_;
    line["scale"] = std::exp(double(m_.param("siglip.logit_scale")->value.data<float>()[0]));
    line["bias"] = double(m_.param("siglip.logit_bias")->value.data<float>()[0]);
  }

  void export_model(const std::string& out, TrainResult& res) const override {
    res.model_dir = out + "/model";
    m_.export_folder(r_.base, res.model_dir, out + "/siglip.safetensors");
  }

 private:
  void read_pairs();

  const Recipe& r_;
  const text::Tokenizer tok_;
  const io::SafetensorsModel st_;
  const vision::VitConfig vc_;
  SiglipModel m_;
  std::vector<Tensor> pixels_;  // preprocessed [3, S, S]
  std::vector<std::vector<int32_t>> captions_;
  double accuracy_ = 0;  // of the last batch
};

void SiglipObjective::read_pairs() {
  const Recipe& r = r_;
  std::vector<std::string> skipped;
  const std::vector<data::Record> records = data::read_llava_json(r.data, r.on_bad, &skipped);
  std::vector<std::string> paths;
  for (const data::Record& rec : records) {
    std::string caption;
    for (const text::Message& msg : rec.messages)
      if (msg.role == "assistant") caption += (caption.empty() ? "" : " ") + msg.content;
    if (rec.image.empty() || caption.empty()) {
      OCELLUS_CHECK(r.on_bad == data::OnBad::Skip, "train: ", r.data, ": record '", rec.id, "' has no ",
                    rec.image.empty() ? "image" : "caption", " (SigLIP pairs need both; skip_bad_records skips it)");
      continue;
    }
    paths.push_back(r.images.empty() ? rec.image : r.images + "/" + rec.image);
    captions_.push_back(tok_.encode(caption, false));
  }
  OCELLUS_CHECK(r.batch >= 2, "train: ", r.path, ": a SigLIP batch needs at least two pairs (its negatives are the others)");
  // Every image decoded and preprocessed once; a missing or broken one skipped when the recipe
  // says so (its caption with it).
  size_t kept = 0;
  for_each_image(r, paths, "siglip", skipped, [&](size_t i, const io::ImageRgb8& img) {
    pixels_.push_back(vision::preprocess(img, vc_.preprocess));
    if (kept != i) captions_[kept] = std::move(captions_[i]);  // (a self-move would empty it)
    ++kept;
  });
  captions_.resize(kept);
  report_skipped(skipped);
  OCELLUS_CHECK(pixels_.size() >= 2, "train: ", r.data, ": SigLIP needs at least two image / caption pairs, found ", pixels_.size());
}

}  // namespace

std::unique_ptr<Objective> siglip_objective(const Recipe& r) { return std::make_unique<SiglipObjective>(r); }

}  // namespace ocellus::train
