#include "ocellus/train/siglip.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/core/progress.h"
#include "ocellus/core/threads.h"
#include "ocellus/io/file.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/image.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/model/vlm_train.h"
#include "ocellus/text/tokenizer.h"
#include "ocellus/data/llava_json.h"
#include "ocellus/train/dist.h"
#include "ocellus/train/optim.h"
#include "ocellus/vision/preprocess.h"
#include "trainer_common.h"

namespace ocellus::train {

namespace fs = std::filesystem;
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
  const int64_t d = vc.n_embd, p = vc.patch_size;
  auto load = [&](const std::string& name, const Shape& shape, bool required) -> ag::Var {
    Tensor t = io::TensorReader{s, "siglip"}.get(name, shape, required);
    // A bias the file leaves out stays zero and frozen (the export has no place for it).
    const bool present = t.defined();
    file_names_.push_back({name, present ? s.file_name(name) : std::string()});
    ag::Var v = add(name, present ? t.to(DType::F32).contiguous().clone() : Tensor::zeros(shape));
    if (!present) absent_.insert(name);
    return v;
  };
  patch_w_ = load(n.patch_w, {d, 3, p, p}, true), patch_b_ = load(n.patch_b, {d}, false);
  pos_ = load(n.pos_embd, {vc.n_positions(), d}, true);
  nn::Maker<nn::Train> mk;
  mk.tensor = load;
  mk.matrix = [&](const std::string& name, const Shape& shape) { return load(name, shape, true); };
  for (int64_t i = 0; i < vc.n_layer; ++i) vblocks_.push_back(vision::load_encoder_block(mk, n, i, d, vc.n_ff));
  post_w_ = load(n.post_ln_w, {d}, true), post_b_ = load(n.post_ln_b, {d}, false);

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

ag::Var SiglipModel::param(const std::string& name) const {
  for (const ag::Var& p : params_)
    if (p->name == name) return p;
  fail("siglip: no parameter '", name, "'");
}

std::vector<std::pair<std::string, Tensor>> SiglipModel::tensors() const {
  std::vector<std::pair<std::string, Tensor>> t;
  for (const ag::Var& p : params_) t.push_back({p->name, p->value});
  return t;
}

const std::string& SiglipModel::file_name(const std::string& param) const {
  for (const auto& [p, f] : file_names_)
    if (p == param) return f;
  fail("siglip: '", param, "' is not a tower parameter");
}

ag::Var SiglipModel::image_embeddings(const std::vector<Tensor>& pixels) const {
  OCELLUS_CHECK(!pixels.empty(), "siglip: no images");
  const int64_t B = int64_t(pixels.size()), np = vc_.n_patches(), d = vc_.n_embd;
  std::vector<ag::Var> rows;
  for (const Tensor& px : pixels) {
    OCELLUS_CHECK(px.ndim() == 3 && px.dim(0) == 3 && px.dim(1) == vc_.image_size && px.dim(2) == vc_.image_size,
                  "siglip: an image of shape ", px.shape().str(), ", the tower reads [3, ", vc_.image_size, ", ", vc_.image_size, "]");
    rows.push_back(ag::patch_embed(px, patch_w_, patch_b_, vc_.patch_size));
  }
  ag::Var h = B == 1 ? rows[0] : ag::concat(rows, 0);
  h = ag::reshape(ag::add(ag::reshape(h, {B, np, d}), pos_), {B * np, d});
  std::vector<int64_t> starts;
  for (int64_t i = 0; i <= B; ++i) starts.push_back(i * np);
  h = vision::vit_blocks(nn::Train{}, vc_, std::span<const vision::EncoderBlock<nn::Train>>(vblocks_), h);
  h = ag::layer_norm(h, post_w_, post_b_, vc_.norm_eps);
  return ag::matmul(ag::segment_mean(h, starts), vhead_w_, vhead_b_);
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

TrainResult run_siglip(const Recipe& r, Start start, const std::function<void(const StepStats&)>& on_step, int64_t stop_after) {
  OCELLUS_CHECK(dist().size == 1, "train: SigLIP pretraining runs in one process (its loss pairs every image with every caption "
                "of the batch)");
  OCELLUS_CHECK(r.lora_rank == 0 && r.tower_from < 0 && r.cache.empty(), "train: ", r.path,
                ": a SigLIP recipe trains the whole tower from the images: no 'lora', 'tower_from' or 'cache'");
  const io::HfConfig cfg = io::read_hf_config(r.base);
  const text::Tokenizer tok = text::Tokenizer::from_file(r.base);
  const io::SafetensorsModel st = io::SafetensorsModel::open(r.base);
  const model::TrainVlmConfig tc = model::train_config_from_hf(cfg);
  vision::VitConfig vc = tc.vit;
  SiglipModel m(vc, io::safetensors_source(st, r.base), tok.n_vocab(), r.siglip, r.seed);

  // Pairs: each record's image and its assistant text (the caption).
  std::vector<std::string> skipped;
  const std::vector<data::Record> records = data::read_llava_json(r.data, r.on_bad, &skipped);
  std::vector<std::string> paths;
  std::vector<std::vector<int32_t>> captions;
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
    captions.push_back(tok.encode(caption, false));
  }
  OCELLUS_CHECK(r.batch >= 2, "train: ", r.path, ": a SigLIP batch needs at least two pairs (its negatives are the others)");
  // Every image decoded and preprocessed once; a missing or broken one skipped when the recipe
  // says so (its caption with it).
  std::vector<Tensor> pixels;
  {
    const auto t0 = std::chrono::steady_clock::now();
    ProgressLine progress;
    size_t kept = 0;
    for (size_t i = 0; i < paths.size(); ++i) {
      try {
        pixels.push_back(vision::preprocess(io::load_image(paths[i]), vc.preprocess));
        if (kept != i) captions[kept] = std::move(captions[i]);  // (a self-move would empty it)
        ++kept;
      } catch (const Error& e) {
        if (r.on_bad != data::OnBad::Skip) throw;
        skipped.push_back(e.what());
      }
      progress.update(int64_t(i + 1), int64_t(paths.size()),
                      ocellus::detail::concat("siglip: images ", i + 1, "/", paths.size(), " (",
                                     int(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()), " s)"));
    }
    captions.resize(kept);
  }
  for (size_t i = 0; i < skipped.size() && i < 5; ++i) std::fprintf(stderr, "train: skipped %s\n", skipped[i].c_str());
  if (!skipped.empty()) std::fprintf(stderr, "train: skipped %zu record(s) (malformed, or a missing or broken image)\n", skipped.size());
  OCELLUS_CHECK(pixels.size() >= 2, "train: ", r.data, ": SigLIP needs at least two image / caption pairs, found ", pixels.size());

  std::vector<ParamGroup> groups(r.groups.size() + 1);
  groups.back().lr = r.lr, groups.back().weight_decay = r.weight_decay;
  for (size_t g = 0; g < r.groups.size(); ++g) groups[g].lr = r.groups[g].lr, groups[g].weight_decay = r.groups[g].weight_decay;
  std::vector<ag::Var> trainable;
  for (const ag::Var& p : m.params()) {
    // The tower trains as the recipe says; the text tower and heads always do (nothing else uses them).
    p->requires_grad = p->name.rfind("siglip.", 0) == 0 ||
                       (!m.absent(p->name) &&
                        std::any_of(r.trainable.begin(), r.trainable.end(), [&](const std::string& pre) { return p->name.rfind(pre, 0) == 0; }));
    if (!p->requires_grad) continue;
    size_t g = 0;
    while (g < r.groups.size() && p->name.rfind(r.groups[g].prefix, 0) != 0) ++g;
    groups[g].params.push_back(p);
    trainable.push_back(p);
  }
  AdamW opt(groups, r.beta1, r.beta2, r.eps);

  const bool resume = start == Start::Resume;
  prepare_out_folder(r, start);  // after the data's checks, before anything is written
  fs::create_directories(r.out);
  const std::string log_path = r.out + "/metrics.jsonl";
  TrainResult res;
  if (resume) {
    res.first_step = detail::load_checkpoint(r.out, m.params(), opt);
    detail::keep_log_until(log_path, res.first_step);
    std::fprintf(stderr, "train: resumed from step %lld\n", (long long)res.first_step);
  } else {
    io::write_text_file_atomically(log_path, "");
  }

  detail::Order order(pixels.size(), r.seed);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t tokens_total = 0;
  for (int64_t step = res.first_step; step < r.steps; ++step) {
    opt.zero_grad();
    std::vector<Tensor> px;
    std::vector<std::vector<int32_t>> ids;
    int64_t tokens = 0;
    for (int64_t j = 0; j < r.batch; ++j) {
      const size_t i = order.at(step * r.batch + j);
      px.push_back(pixels[i]), ids.push_back(captions[i]);
      tokens += vc.n_patches() + std::min<int64_t>(int64_t(captions[i].size()), r.siglip.max_text_len);
    }
    const ag::Var zi = m.image_embeddings(px), zt = m.text_embeddings(ids);
    const ag::Var l = ag::sigmoid_pair_loss(zi, zt, m.param("siglip.logit_scale"), m.param("siglip.logit_bias"));
    const double acc = batch_accuracy(zi->value, zt->value);
    ag::Tape::current().backward(l);
    const double loss = l->value.data<float>()[0];
    const double norm = clip_grad_norm(trainable, r.clip > 0 ? r.clip : 1e30);
    const double factor = cosine_schedule(step, r.warmup, r.steps, r.min_lr_ratio);
    opt.step(factor);
    tokens_total += tokens;
    res.losses.push_back(loss);
    StepStats s;
    s.step = step + 1, s.steps = r.steps, s.first_step = res.first_step, s.tokens = tokens, s.loss = loss, s.lr = r.lr * factor;
    s.grad_norm = norm;
    s.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    s.tokens_per_s = double(tokens_total) / std::max(1e-9, s.elapsed_s);
    {
      std::ofstream log(log_path, std::ios::app);
      log << json{{"step", s.step}, {"loss", loss}, {"batch_accuracy", acc}, {"lr", s.lr}, {"grad_norm", norm},
                  {"scale", std::exp(double(m.param("siglip.logit_scale")->value.data<float>()[0]))},
                  {"bias", double(m.param("siglip.logit_bias")->value.data<float>()[0])}, {"tokens", tokens},
                  {"tokens_per_s", s.tokens_per_s}, {"elapsed_s", s.elapsed_s}}.dump() << "\n";
    }
    if (on_step) on_step(s);
    const bool last = step + 1 == r.steps;
    if (last || (r.checkpoint_every > 0 && (step + 1) % r.checkpoint_every == 0))
      detail::save_checkpoint(r.out, step + 1, m.tensors(), opt, r.keep);
    if (stop_after > 0 && step + 1 - res.first_step >= stop_after && !last) return res;
  }
  detail::draw_loss_curve(detail::logged_losses(log_path), r.out + "/loss.png");
  // The base folder with the trained tower; the text tower and heads beside it.
  std::map<std::string, Tensor> trained;
  std::vector<std::pair<std::string, Tensor>> heads;
  for (const ag::Var& p : m.params()) {
    if (p->name.rfind("siglip.", 0) == 0) {
      heads.push_back({p->name, p->value});
      continue;
    }
    if (!m.absent(p->name)) trained[m.file_name(p->name)] = p->value;
  }
  res.model_dir = r.out + "/model";
  export_folder(r.base, trained, res.model_dir);
  io::write_safetensors(r.out + "/siglip.safetensors", heads);
  return res;
}

}  // namespace ocellus::train
