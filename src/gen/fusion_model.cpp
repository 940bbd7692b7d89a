#include "ocellus/gen/fusion_model.h"

#include <cmath>
#include <filesystem>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/gen/fusion.h"
#include "ocellus/io/file.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/io/json.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/lm/family.h"
#include "ocellus/ops/elementwise.h"
#include "ocellus/ops/shape.h"

namespace ocellus::gen {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- config ------------------------------------------------------------------------------------

UNetConfig FusionConfig::unet(const VaeConfig& v, int64_t d_model) const {
  UNetConfig u;
  u.latent_channels = v.latent_channels, u.latent_size = v.latent_size();
  u.block_out_channels = block_out_channels, u.norm_num_groups = norm_num_groups, u.d_model = d_model;
  u.validate("fusion");
  return u;
}

FusionConfig parse_fusion_config(const std::string& text, const std::string& where) {
  const json j = io::parse_json(text, where, "fusion config");
  OCELLUS_CHECK(j.is_object(), where, ": fusion config: not a JSON object");
  static const std::set<std::string> kKeys = {"model_type", "base", "vae", "block_out_channels", "norm_num_groups",
                                              "modality_specific", "num_train_timesteps", "beta_start", "beta_end"};
  for (const auto& [k, v] : j.items()) OCELLUS_CHECK(kKeys.count(k), where, ": fusion config: unknown key '", k, "'");
  OCELLUS_CHECK(j.value("model_type", std::string("llamafusion")) == "llamafusion", where,
                ": fusion config: model_type must be \"llamafusion\"");
  FusionConfig c;
  auto str = [&](const char* k, std::string& v) {
    OCELLUS_CHECK(j.contains(k) && j[k].is_string() && !j[k].get<std::string>().empty(), where, ": fusion config: '", k,
                  "' (a path) is required");
    v = j[k].get<std::string>();
  };
  str("base", c.base), str("vae", c.vae);
  auto integer = [&](const char* k, int64_t& v, int64_t lo, int64_t hi) {
    if (!j.contains(k)) return;
    OCELLUS_CHECK(j[k].is_number_integer() && j[k].get<int64_t>() >= lo && j[k].get<int64_t>() <= hi, where, ": fusion config: '",
                  k, "' must be an integer in [", lo, ", ", hi, "]");
    v = j[k].get<int64_t>();
  };
  integer("norm_num_groups", c.norm_num_groups, 1, 4096), integer("num_train_timesteps", c.train_steps, 1, 100000);
  if (j.contains("block_out_channels")) {
    OCELLUS_CHECK(j["block_out_channels"].is_array(), where, ": fusion config: 'block_out_channels' must be a list of integers");
    c.block_out_channels.clear();
    for (const json& v : j["block_out_channels"]) {
      OCELLUS_CHECK(v.is_number_integer(), where, ": fusion config: 'block_out_channels' must be a list of integers");
      c.block_out_channels.push_back(v.get<int64_t>());
    }
  }
  if (j.contains("modality_specific")) {
    OCELLUS_CHECK(j["modality_specific"].is_boolean(), where, ": fusion config: 'modality_specific' must be true or false");
    c.modality_specific = j["modality_specific"].get<bool>();
  }
  auto number = [&](const char* k, double& v) {
    if (!j.contains(k)) return;
    OCELLUS_CHECK(j[k].is_number() && j[k].get<double>() > 0 && j[k].get<double>() < 1, where, ": fusion config: '", k,
                  "' must be a number in (0, 1)");
    v = j[k].get<double>();
  };
  number("beta_start", c.beta_start), number("beta_end", c.beta_end);
  OCELLUS_CHECK(c.beta_start <= c.beta_end, where, ": fusion config: beta_start ", c.beta_start, " above beta_end ", c.beta_end);
  return c;
}

std::string fusion_config_json(const FusionConfig& c) {
  json j;
  j["model_type"] = "llamafusion", j["base"] = c.base, j["vae"] = c.vae;
  j["block_out_channels"] = c.block_out_channels, j["norm_num_groups"] = c.norm_num_groups;
  j["modality_specific"] = c.modality_specific, j["num_train_timesteps"] = c.train_steps;
  j["beta_start"] = c.beta_start, j["beta_end"] = c.beta_end;
  return j.dump(2) + "\n";
}

// ---- weights -------------------------------------------------------------------------------------

namespace {

// The image modules read as a decoder of the base's GGUF names: each asked "image." + name, but
// the token table and the head, which the image side does not have, are the text's.
template <class F>
nn::Maker<F> image_modules_maker(const nn::Maker<F>& mk, const lm::DecoderWeights<F>& text) {
  const lm::detail::Names n = lm::detail::gguf_names();
  nn::Maker<F> m;
  m.tensor = [mk, n, embd = text.token_embd](const std::string& name, const Shape& s, bool required) -> typename F::P {
    if (name == n.tok_embd) return embd;
    if (name == n.output || name == n.output_b) return {};
    return mk.tensor("image." + name, s, required);
  };
  m.matrix = [mk](const std::string& name, const Shape& s) { return mk.matrix("image." + name, s); };
  m.has = [mk](const std::string& name) { return mk.has("image." + name); };
  m.shape = [mk](const std::string& name) { return mk.shape("image." + name); };
  return m;
}

}  // namespace

template <class F>
FusionWeights<F> load_fusion_weights(const nn::Maker<F>& modules, const nn::Maker<F>& rest, const FusionConfig& c,
                                     const UNetConfig& u, const lm::LmConfig& lc, const lm::DecoderWeights<F>& text) {
  FusionWeights<F> w;
  w.image = c.modality_specific ? lm::family_by_arch(lc.arch).gguf_weights(lc, image_modules_maker(modules, text)) : text;
  w.boi = rest.tensor("image.boi", {lc.n_embd}, true);
  w.eoi = rest.tensor("image.eoi", {lc.n_embd}, true);
  w.unet = load_unet(rest, u, "image.unet.");
  return w;
}
template FusionWeights<nn::Infer> load_fusion_weights(const nn::Maker<nn::Infer>&, const nn::Maker<nn::Infer>&, const FusionConfig&,
                                                      const UNetConfig&, const lm::LmConfig&, const lm::DecoderWeights<nn::Infer>&);
template FusionWeights<nn::Train> load_fusion_weights(const nn::Maker<nn::Train>&, const nn::Maker<nn::Train>&, const FusionConfig&,
                                                      const UNetConfig&, const lm::LmConfig&, const lm::DecoderWeights<nn::Train>&);

std::vector<int32_t> caption_before(const text::Tokenizer& tok, const std::string& caption) { return tok.encode(caption, false); }

std::vector<int32_t> caption_after(const text::Tokenizer& tok, const std::string& caption) {
  std::vector<int32_t> ids = tok.encode(caption, false);
  OCELLUS_CHECK(tok.eos() >= 0, "fusion: the base's vocabulary has no end-of-sequence token to end a caption with");
  ids.push_back(tok.eos());
  return ids;
}

// ---- training ------------------------------------------------------------------------------------

TrainableFusion::TrainableFusion(const FusionConfig& c, const io::GgufFile& base, const VaeConfig& vae, uint64_t seed,
                                 const io::TensorSource* init)
    : c_(c) {
  const lm::Family& fam = lm::family_by_arch(base.get_string(io::gguf::key::kArchitecture), base.path());
  lc_ = fam.gguf_config(base);
  lc_.validate();
  u_ = c.unet(vae, lc_.n_embd);
  std::map<std::string, std::string> file_names;
  const io::TensorSource src = io::gguf_source(base);
  text_ = fam.gguf_weights(lc_, nn::param_maker(init ? io::overlay_source(*init, src) : src, "fusion: base", &params_, &file_names));
  if (init) {  // a trained model's image side
    const nn::Maker<nn::Train> mk = nn::param_maker(*init, "fusion: init", &params_, &file_names);
    w_ = load_fusion_weights(mk, mk, c_, u_, lc_, text_);
    return;
  }
  // The image modules start as copies of the text's (the paper's initialization).
  const io::TensorSource copies = io::renamed_source(src, {{"image.", ""}});
  w_ = load_fusion_weights(nn::param_maker(copies, "fusion: base", &params_, &file_names), nn::new_param_maker(params_, seed), c_, u_,
                           lc_, text_);
  // BOI and EOI start as rows of the token table's scale.
  const Tensor& table = text_.token_embd->value;
  double ss = 0;
  for (int64_t i = 0; i < table.numel(); ++i) ss += double(table.data<float>()[i]) * table.data<float>()[i];
  const float sd = float(std::sqrt(ss / double(table.numel())));
  std::mt19937_64 rng(seed ^ 0xb01e01ull);
  std::normal_distribution<float> normal(0.0f, sd);
  for (const ag::Var& p : {w_.boi, w_.eoi})
    for (int64_t i = 0; i < lc_.n_embd; ++i) p->value.data<float>()[i] = normal(rng);
}

struct TrainableFusion::Rows {
  std::vector<int64_t> starts{0};  // each sequence's first row, then the total
  std::vector<bool> is_image;
  std::vector<Tensor> masks;
  std::vector<int32_t> pos;
  std::vector<int32_t> image_rows;                   // every image's positions, image by image
  std::vector<std::vector<int32_t>> from, targets;  // per sequence: the rows predicting text, their tokens
};

TrainableFusion::Rows TrainableFusion::layout(const std::vector<FusionSample>& batch) const {
  OCELLUS_CHECK(!batch.empty(), "fusion: empty batch");
  const int64_t P = u_.n_positions();
  Rows r;
  for (const FusionSample& s : batch) {
    const int64_t o = r.starts.back(), nb = int64_t(s.before.size()), na = int64_t(s.after.size());
    const int64_t n = nb + 1 + P + 1 + na, img = o + nb + 1;
    for (int64_t i = 0; i < n; ++i) r.pos.push_back(int32_t(i)), r.is_image.push_back(o + i >= img && o + i < img + P);
    for (int64_t i = 0; i < P; ++i) r.image_rows.push_back(int32_t(img + i));
    r.masks.push_back(fusion_mask(n, {{nb + 1, nb + 1 + P}}));
    std::vector<int32_t> from, targets;
    for (int64_t k = 1; k < nb; ++k) from.push_back(int32_t(o + k - 1)), targets.push_back(s.before[size_t(k)]);
    for (int64_t k = 0; k < na; ++k) from.push_back(int32_t(img + P + k)), targets.push_back(s.after[size_t(k)]);  // EOI, then after
    r.from.push_back(std::move(from)), r.targets.push_back(std::move(targets));
    r.starts.push_back(o + n);
  }
  return r;
}

ag::Var TrainableFusion::hidden(const std::vector<FusionSample>& batch, const Rows& r, UNetDown<nn::Train>* down) const {
  const nn::Train f;
  const int64_t P = u_.n_positions(), h = u_.latent_size, z = u_.latent_channels;
  std::vector<Tensor> latents;
  std::vector<float> t;
  for (const FusionSample& s : batch) {
    OCELLUS_CHECK(s.latent.defined() && s.latent.shape() == Shape({h, h, z}), "fusion: a latent of shape ",
                  s.latent.defined() ? s.latent.shape().str() : "(none)", ", the model reads [", h, ", ", h, ", ", z, "]");
    latents.push_back(s.latent.reshape({1, h, h, z})), t.push_back(s.timestep);
  }
  *down = unet_down(f, u_, w_.unet, ag::constant(ops::concat(latents, 0)), t);
  std::vector<ag::Var> pieces;
  const ag::Var boi = f.reshape(w_.boi, {1, lc_.n_embd}), eoi = f.reshape(w_.eoi, {1, lc_.n_embd});
  for (size_t b = 0; b < batch.size(); ++b) {
    if (!batch[b].before.empty()) pieces.push_back(f.rows(text_.token_embd, batch[b].before));
    pieces.push_back(boi);
    pieces.push_back(f.slice(down->positions, 0, int64_t(b) * P, int64_t(b + 1) * P));
    pieces.push_back(eoi);
    if (!batch[b].after.empty()) pieces.push_back(f.rows(text_.token_embd, batch[b].after));
  }
  ag::Var x = f.concat(pieces, 0);
  const Modalities m = Modalities::of(r.is_image);
  const float scale = 1.0f / std::sqrt(float(lc_.head_dim));
  auto attend = [&](const ag::Var& q, const ag::Var& k, const ag::Var& v) {
    return f.attention_segments(q, k, v, scale, r.starts, false, r.masks);
  };
  for (size_t l = 0; l < text_.layers.size(); ++l) x = fusion_layer(f, lc_, text_.layers[l], w_.image.layers[l], m, x, r.pos, attend);
  return x;
}

TrainableFusion::Outputs TrainableFusion::forward(const std::vector<FusionSample>& batch) const {
  const nn::Train f;
  const Rows r = layout(batch);
  UNetDown<nn::Train> down;
  const ag::Var x = hidden(batch, r, &down);
  Outputs o;
  o.logits = lm::decoder_head(f, lc_, text_, x);
  const ag::Var img = lm::decoder_norm(f, lc_, f.rows(x, r.image_rows), w_.image.out_norm, w_.image.out_norm_b);
  o.noise = unet_up(f, u_, w_.unet, img, down);
  return o;
}

ag::Var TrainableFusion::loss(const std::vector<FusionSample>& batch, float image_weight, float* ce, float* mse) const {
  const nn::Train f;
  const Rows r = layout(batch);
  UNetDown<nn::Train> down;
  const ag::Var x = hidden(batch, r, &down);
  const float per = 1.0f / float(batch.size());
  std::vector<int32_t> from;
  for (const auto& v : r.from) from.insert(from.end(), v.begin(), v.end());
  ag::Var total;
  auto add = [&](const ag::Var& term) { total = total ? ag::add(total, term) : term; };
  double ce_sum = 0, mse_sum = 0;
  int64_t n_ce = 0, n_mse = 0;
  if (!from.empty()) {  // the head on the rows that predict text only
    const ag::Var logits = lm::decoder_head(f, lc_, text_, f.rows(x, from));
    int64_t a = 0;
    for (const auto& targets : r.targets) {
      if (targets.empty()) continue;
      const ag::Var term = ag::cross_entropy(f.slice(logits, 0, a, a + int64_t(targets.size())), targets);
      a += int64_t(targets.size());
      ce_sum += term->value.data<float>()[0], ++n_ce;
      add(ag::scale(term, per));
    }
  }
  std::vector<int32_t> diffused;  // rows of the images whose noise is in the loss
  std::vector<Tensor> noises;
  for (size_t b = 0; b < batch.size(); ++b)
    if (batch[b].noise.defined()) {
      for (int64_t i = 0; i < u_.n_positions(); ++i) diffused.push_back(r.image_rows[b * size_t(u_.n_positions()) + size_t(i)]);
      noises.push_back(batch[b].noise.reshape({1, u_.latent_size, u_.latent_size, u_.latent_channels}));
    }
  if (!diffused.empty()) {
    // Only the diffused images go up: the up-sampler of the others carries no loss.
    std::vector<int32_t> which;
    for (size_t b = 0; b < batch.size(); ++b)
      if (batch[b].noise.defined()) which.push_back(int32_t(b));
    UNetDown<nn::Train> d;
    auto images = [&](const ag::Var& v) {  // the diffused images' rows of a [B, ...] value
      const Shape& s = v->value.shape();
      const int64_t per_image = s.numel() / s[0];
      Shape out = s;
      out[0] = int64_t(which.size());
      return f.reshape(f.rows(f.reshape(v, {s[0], per_image}), which), out);
    };
    d.temb = images(down.temb);
    for (const ag::Var& s : down.skips) d.skips.push_back(images(s));
    const ag::Var img = lm::decoder_norm(f, lc_, f.rows(x, diffused), w_.image.out_norm, w_.image.out_norm_b);
    const ag::Var pred = unet_up(f, u_, w_.unet, img, d);
    for (size_t k = 0; k < which.size(); ++k) {
      const ag::Var term = ag::mse(f.slice(pred, 0, int64_t(k), int64_t(k) + 1), ag::constant(noises[k]));
      mse_sum += term->value.data<float>()[0], ++n_mse;
      add(ag::scale(term, per * image_weight));
    }
  }
  OCELLUS_CHECK(total != nullptr, "fusion: a batch with no text to predict and no diffused image has no loss");
  if (ce) *ce = n_ce ? float(ce_sum / double(n_ce)) : 0.0f;
  if (mse) *mse = n_mse ? float(mse_sum / double(n_mse)) : 0.0f;
  return total;
}

void TrainableFusion::save(const std::string& dir, const FusionConfig& as_written, DType dtype) const {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const ag::Var& p : params_)
    if (p->name.starts_with("image.") || p->requires_grad) tensors.emplace_back(p->name, p->value);
  fs::create_directories(dir);
  io::write_text_file_atomically(dir + "/config.json", fusion_config_json(as_written));
  io::write_safetensors(dir + "/model.safetensors", io::matrices_as(std::move(tensors), dtype));
}

// ---- inference -----------------------------------------------------------------------------------

namespace {
std::string beside(const std::string& dir, const std::string& p) { return fs::path(p).is_relative() ? dir + "/" + p : p; }
}  // namespace

namespace {
FusionConfig read_fusion_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  OCELLUS_CHECK(io::is_file(path), "fusion: ", dir, ": no config.json (not a LlamaFusion model folder)");
  return parse_fusion_config(io::read_text_file(path), path);
}
}  // namespace

bool is_fusion_folder(const std::string& dir) {
  if (!io::is_file(dir + "/config.json")) return false;
  const json j = io::read_json_file(dir + "/config.json", "model config");
  return j.is_object() && j.value("model_type", std::string()) == "llamafusion";
}

std::unique_ptr<lm::LanguageModel> load_fusion_text(const std::string& dir, std::string* base_path) {
  const FusionConfig c = read_fusion_config(dir);
  const std::string base = beside(dir, c.base);
  OCELLUS_CHECK(io::is_file(base), "fusion: ", dir, "/config.json: the base model ", base, " does not exist");
  if (base_path) *base_path = base;
  const io::GgufFile g = io::GgufFile::open(base);
  const io::SafetensorsModel st = io::SafetensorsModel::open(dir + "/model.safetensors");
  const io::TensorSource src = io::safetensors_source(st, dir + "/model.safetensors");
  // A model whose text trained (Transfusion) holds its text tensors over the base's.
  return src.has(io::gguf::tensor::kTokenEmbd) ? lm::load_gguf(g, src) : lm::load_gguf(g);
}

FusionModel::FusionModel(const std::string& dir) : c_(read_fusion_config(dir)) {
  const std::string vae = beside(dir, c_.vae);
  OCELLUS_CHECK(io::is_file(vae + "/config.json"), "fusion: ", dir, "/config.json: the VAE folder ", vae, " has no config.json");
  lm_ = load_fusion_text(dir, &base_path_);
  tok_ = std::make_unique<text::Tokenizer>(text::Tokenizer::from_gguf(io::GgufFile::open(base_path_)));
  st_ = std::make_unique<io::SafetensorsModel>(io::SafetensorsModel::open(dir + "/model.safetensors"));
  vc_ = parse_vae_config(io::read_text_file(vae + "/config.json"), vae + "/config.json");
  vae_st_ = std::make_unique<io::SafetensorsModel>(io::SafetensorsModel::open(vae + "/model.safetensors"));
  vae_ = load_vae(nn::f32_file_maker(io::safetensors_source(*vae_st_, vae + "/model.safetensors"), "vae"), vc_);
  u_ = c_.unet(vc_, lm_->config().n_embd);
  sched_ = NoiseSchedule(c_.train_steps, c_.beta_start, c_.beta_end);
  const nn::Maker<nn::Infer> mk = nn::f32_file_maker(io::safetensors_source(*st_, dir + "/model.safetensors"), "fusion");
  w_ = load_fusion_weights(mk, mk, c_, u_, lm_->config(), lm_->weights());
}

FusionModel::~FusionModel() = default;

void FusionModel::push_marker(bool begin, lm::KvCache& cache) const {
  lm_->forward((begin ? w_.boi : w_.eoi).reshape({1, lm_->config().n_embd}), cache, false);
}

Tensor FusionModel::push_text(const std::vector<int32_t>& ids, lm::KvCache& cache, bool eoi_first) const {
  std::vector<Tensor> rows;
  if (eoi_first) rows.push_back(w_.eoi.reshape({1, lm_->config().n_embd}));
  if (!ids.empty()) rows.push_back(lm_->embed(ids));
  OCELLUS_CHECK(!rows.empty(), "fusion: nothing to push");
  return lm_->forward(ops::concat(rows, 0), cache, false);
}

Tensor FusionModel::predict_noise(const Tensor& latent, float t, lm::KvCache& cache) const {
  const nn::Infer f;
  const UNetDown<nn::Infer> d = unet_down(f, u_, w_.unet, latent, {t});
  const Tensor rows = lm_->forward_rows(d.positions, cache, w_.image.layers, false);
  return unet_up(f, u_, w_.unet, lm::decoder_norm(f, lm_->config(), rows, w_.image.out_norm, w_.image.out_norm_b), d);
}

void FusionModel::push_image(const Tensor& latent, lm::KvCache& cache) const {
  const UNetDown<nn::Infer> d = unet_down(nn::Infer{}, u_, w_.unet, latent, {0.0f});
  lm_->forward_rows(d.positions, cache, w_.image.layers, true);
}

Tensor FusionModel::encode(const Tensor& images) const {
  return vae_latents(vc_, vae_, images);
}

Tensor FusionModel::decode(const Tensor& latents) const {
  return vae_decode(nn::Infer{}, vc_, vae_, ops::scale(latents, float(1.0 / vc_.scaling_factor)));
}

// ---- sampling ------------------------------------------------------------------------------------

Tensor generate_image(const FusionModel& m, const std::string& caption, const ImageSampling& s,
                      const std::function<void(int64_t, int64_t)>& progress) {
  OCELLUS_CHECK(s.steps >= 1 && s.steps <= m.schedule().train_steps(), "generate-image: --steps ", s.steps, " (1 to ",
                m.schedule().train_steps(), ")");
  const std::vector<int32_t> before = caption_before(m.tokenizer(), caption);
  const int64_t P = m.image_rows(), h = m.unet_config().latent_size, z = m.unet_config().latent_channels;
  // The text before the image, in the cache once: each step runs only the image's positions.
  auto prefix = [&](const std::vector<int32_t>& ids) {
    lm::KvCache c = m.cache(int64_t(ids.size()) + 1 + P);
    if (!ids.empty()) m.push_text(ids, c);
    m.push_marker(true, c);
    return c;
  };
  lm::KvCache cond = prefix(before);
  std::unique_ptr<lm::KvCache> uncond;
  if (s.cfg != 1.0f) uncond = std::make_unique<lm::KvCache>(prefix({}));
  std::mt19937_64 rng(s.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto gaussian = [&] {
    Tensor t = Tensor::empty({1, h, h, z});
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
    return t;
  };
  Tensor x = gaussian();
  const std::vector<int64_t> steps = m.schedule().sampling_steps(s.steps);
  for (size_t i = 0; i < steps.size(); ++i) {
    const int64_t t = steps[i], prev = i + 1 < steps.size() ? steps[i + 1] : -1;
    Tensor eps = m.predict_noise(x, float(t), cond);
    if (uncond) eps = guide(eps, m.predict_noise(x, float(t), *uncond), s.cfg);
    x = s.ddpm ? m.schedule().ddpm_step(x, eps, t, prev, gaussian()) : m.schedule().ddim_step(x, eps, t, prev);
    if (progress) progress(int64_t(i) + 1, int64_t(steps.size()));
  }
  const Tensor img = m.decode(x);
  return img.reshape({img.dim(1), img.dim(2), img.dim(3)});
}

std::string describe_image(const FusionModel& m, const Tensor& image, int64_t max_tokens) {
  const Tensor latent = m.encode(image.reshape({1, image.dim(0), image.dim(1), image.dim(2)}));
  lm::KvCache c = m.cache(1 + m.image_rows() + 1 + max_tokens);
  m.push_marker(true, c);
  m.push_image(latent, c);
  Tensor logits = m.push_text({}, c, true);
  std::vector<int32_t> out;
  for (int64_t k = 0; k < max_tokens; ++k) {
    const float* l = logits.data<float>();
    int32_t best = 0;
    for (int32_t v = 1; v < int32_t(logits.numel()); ++v)
      if (l[v] > l[best]) best = v;
    if (best == m.tokenizer().eos()) break;
    out.push_back(best);
    if (k + 1 < max_tokens) logits = m.push_text({best}, c);
  }
  std::string s;
  for (int32_t id : out) s += m.tokenizer().piece(id, true);
  return s;
}

}  // namespace ocellus::gen
