#include "ocellus/model/vlm_train.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "ocellus/core/error.h"
#include "ocellus/lm/decoder_block.h"
#include "ocellus/lm/family.h"
#include "ocellus/ops/elementwise.h"
#include "ocellus/ops/loss.h"
#include "ocellus/ops/matmul.h"
#include "ocellus/vision/encoder_block.h"

namespace ocellus::model {

TrainVlmConfig train_config_from_hf(const io::HfConfig& h) {
  OCELLUS_CHECK(h.text.has_value(), h.path, ": config.json describes no text model");
  TrainVlmConfig c;
  c.text = *h.text;
  const lm::Family& fam = lm::family_by_hf(c.text.model_type, h.path);  // throws naming the known ones
  OCELLUS_CHECK(fam.trainable, h.path, ": the ", fam.gguf_arch, " text family cannot be trained");
  OCELLUS_CHECK(h.vision.has_value(), h.path, ": config.json has no vision_config (the connector's input width)");
  c.vit = vision::vit_config_from_hf(*h.vision, h.projector ? h.projector->vision_feature_layer : -2, h.path);
  c.vit.drop_class_token = !h.projector || h.projector->vision_feature_select == "patch";
  if (h.projector) {
    c.connector = h.projector->type;
    c.connector_act = ops::parse_activation(h.projector->hidden_act);
    c.merge = h.projector->spatial_merge_size;
    try {  // throws unless the merge fits the patch grid
      connect::merge_order(c.vit.n_features(), c.merge);
    } catch (const Error& e) {
      fail(h.path, ": ", e.what());
    }
  }
  return c;
}

connect::ConnectorConfig TrainVlmConfig::connector_config(int64_t n_embd) const {
  connect::ConnectorConfig cc;
  cc.d_in = vit.n_embd, cc.d_out = n_embd, cc.act = connector_act, cc.merge = merge;
  return cc;
}

const std::string& TrainableVlm::file_name(const std::string& param) const {
  const auto it = file_names_.find(param);
  if (it == file_names_.end()) fail("train: no parameter '", param, "' from the checkpoint");
  return it->second;
}

TrainableVlm::TrainableVlm(TrainVlmConfig c, const io::TensorSource& s_in) : c_(std::move(c)) {
  auto maker = [this](const io::TensorSource& s) { return nn::param_maker(s, "train", &params_, &file_names_); };
  lm_ = lm::load_hf_weights(c_.text, maker(lm::hf_text_source(s_in)), &lm_c_);
  if (c_.tower_from >= 0) {  // the tower's upper blocks, under canonical HF llava names
    const vision::VitConfig& v = c_.vit;
    OCELLUS_CHECK(c_.tower_from < v.n_layer_run, "train: tower_from ", c_.tower_from, " but the tower runs ", v.n_layer_run, " blocks");
    const io::TensorSource ts = io::renamed_source(s_in, {{"vision_tower.vision_model.", vision::find_hf_vit_prefix(s_in)}});
    tower_ = vision::load_vit(maker(ts), v, vision::hf_vit_names("vision_tower.vision_model."), c_.tower_from);
  }
  // The projector, under HF llava's names in the checkpoint's layout.
  io::TensorSource ps = s_in;
  if (s_in.has("model.multi_modal_projector.linear_1.weight") || s_in.has("model.multi_modal_projector.proj.weight"))
    ps = io::renamed_source(s_in, {{"multi_modal_projector.", "model.multi_modal_projector."}});
  conn_ = connect::load_connector(c_.connector, c_.connector_config(lm_c_.n_embd), maker(ps), connect::Layout::HfLlava, s_in.path);
}

nn::Train TrainableVlm::context() const {
  nn::Train f;
  f.adapters = &lora_;
  return f;
}

ag::Var TrainableVlm::image_rows(const Tensor& feats) const {
  const nn::Train f = context();
  ag::Var h = ag::constant(feats);
  if (c_.tower_from >= 0) {  // the tower's upper blocks over the hidden state [n_pos, d_v]
    const vision::VitConfig& v = c_.vit;
    OCELLUS_CHECK(feats.dim(0) == v.n_positions(), "train: a hidden state of ", feats.dim(0), " rows; the tower has ",
                  v.n_positions(), " positions");
    h = vision::vit_features(f, v, vision::vit_blocks(f, v, tower_.blocks, h), tower_.post_ln_w, tower_.post_ln_b);
  }
  OCELLUS_CHECK(h->value.ndim() == 2 && h->value.dim(1) == c_.vit.n_embd, "train: features of width ",
                h->value.ndim() == 2 ? h->value.dim(1) : -1, ", the tower's is ", c_.vit.n_embd);
  return conn_->forward(f, h);
}

int TrainableVlm::set_trainable(const std::string& prefix, bool trainable) {
  int n = 0;
  for (const ag::Var& p : params_)
    if (p->name.compare(0, prefix.size(), prefix) == 0) p->requires_grad = trainable, ++n;
  return n;
}

ag::Var TrainableVlm::input_rows(const TrainSample& s) const {
  const int64_t n = int64_t(s.ids.size());
  OCELLUS_CHECK(n > 0, "train: empty sequence");
  OCELLUS_CHECK(n <= lm_c_.n_ctx || lm_c_.n_ctx <= 0, "train: sequence of ", n, " tokens is longer than the context (",
                lm_c_.n_ctx, ")");
  // Text runs embedded, image runs from the connector.
  std::vector<ag::Var> parts;
  size_t image = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    const bool img = s.ids[size_t(i)] < 0;
    while (j < n && (s.ids[size_t(j)] < 0) == img) ++j;
    if (!img) {
      parts.push_back(ag::embedding(lm_.token_embd, std::vector<int32_t>(s.ids.begin() + i, s.ids.begin() + j)));
    } else {
      // Consecutive image runs are one run here: take whole images until the run is filled.
      int64_t need = j - i;
      while (need > 0) {
        OCELLUS_CHECK(image < s.features.size(), "train: the sequence has more image rows than features given");
        const Tensor& f = s.features[image++];
        OCELLUS_CHECK(f.ndim() == 2, "train: image features must be [rows, width]");
        const ag::Var h = image_rows(f);
        OCELLUS_CHECK(h->value.dim(0) <= need, "train: an image has ", h->value.dim(0), " rows but its run holds ", need);
        parts.push_back(h);
        need -= h->value.dim(0);
      }
    }
    i = j;
  }
  OCELLUS_CHECK(image == s.features.size(), "train: ", s.features.size(), " feature blocks for ", image, " images");
  return parts.size() == 1 ? parts[0] : ag::concat(parts, 0);
}

ag::Var TrainableVlm::forward_batch(const std::vector<TrainSample>& batch) const {
  return lm::decoder_head(context(), lm_c_, lm_, hidden_batch(batch));  // [n, n_vocab]
}

ag::Var TrainableVlm::hidden_batch(const std::vector<TrainSample>& batch) const {
  OCELLUS_CHECK(!batch.empty(), "train: empty batch");
  std::vector<ag::Var> rows;
  std::vector<int64_t> start{0};
  std::vector<int32_t> pos;
  for (const TrainSample& s : batch) {
    rows.push_back(input_rows(s));
    for (size_t i = 0; i < s.ids.size(); ++i) pos.push_back(int32_t(i));
    start.push_back(start.back() + int64_t(s.ids.size()));
  }
  const nn::Train f = context();
  ag::Var x = f.concat(rows, 0);  // [n, d]
  const float scale = 1.0f / std::sqrt(float(lm_c_.head_dim));
  // Each sequence attends causally within itself.
  auto attend = [&](const ag::Var& q, const ag::Var& k, const ag::Var& v) { return f.attention_segments(q, k, v, scale, start, true); };
  for (const lm::DecoderLayer<nn::Train>& L : lm_.layers) x = lm::decoder_layer(f, lm_c_, L, x, pos, attend);
  return x;
}

int64_t TrainableVlm::counted_tokens(const TrainSample& s) {
  int64_t c = 0;
  for (size_t i = 1; i < s.ids.size() && i < s.mask.size(); ++i) c += s.mask[i] && s.ids[i] >= 0;
  return c;
}

ag::Var TrainableVlm::loss_batch(const std::vector<TrainSample>& batch) const {
  // The rows that predict a counted token, and those tokens.
  std::vector<int32_t> rows, targets;
  int32_t row = 0;
  for (const TrainSample& s : batch) {
    OCELLUS_CHECK(s.mask.size() == s.ids.size(), "train: mask of ", s.mask.size(), " for ", s.ids.size(), " tokens");
    for (size_t i = 0; i < s.ids.size(); ++i, ++row)
      if (i + 1 < s.ids.size() && s.mask[i + 1] && s.ids[i + 1] >= 0) rows.push_back(row), targets.push_back(s.ids[i + 1]);
  }
  if (rows.empty()) {  // nothing counted: the loss of no tokens, as cross_entropy defines it
    std::vector<int32_t> none(size_t(row), ops::kIgnoreIndex);
    return ag::cross_entropy(forward_batch(batch), none);
  }
  // Logits only where a loss is taken: a row gather (embedding's lookup, whose backward adds the
  // rows' gradients back into place), then the output layer on those rows.
  return ag::cross_entropy(lm::decoder_head(context(), lm_c_, lm_, ag::embedding(hidden_batch(batch), rows)), targets);
}

void TrainableVlm::enable_lora(int64_t rank, float alpha, const std::vector<std::string>& targets, uint64_t seed) {
  OCELLUS_CHECK(rank > 0, "train: LoRA rank must be > 0");
  OCELLUS_CHECK(lora_.empty(), "train: LoRA is already enabled");
  std::mt19937_64 rng(seed);
  std::vector<ag::Var> added;
  for (const ag::Var& p : params_) {
    const std::string& n = p->name;
    if (n.rfind("model.layers.", 0) != 0 || p->value.ndim() != 2) continue;
    const std::string stem = n.substr(0, n.size() - std::string(".weight").size());
    bool hit = false;
    for (const std::string& t : targets) hit = hit || (stem.size() >= t.size() && stem.compare(stem.size() - t.size(), t.size(), t) == 0);
    if (!hit) continue;
    const int64_t m = p->value.dim(0), k = p->value.dim(1);
    Tensor a = Tensor::empty({rank, k});
    std::uniform_real_distribution<float> u(-1.0f / std::sqrt(float(k)), 1.0f / std::sqrt(float(k)));
    for (int64_t i = 0; i < a.numel(); ++i) a.data<float>()[i] = u(rng);
    nn::Train::Adapter l{p.get(), ag::leaf(a, true, stem + ".lora_A"), ag::leaf(Tensor::zeros({m, rank}), true, stem + ".lora_B"),
                         alpha / float(rank)};
    added.push_back(l.a), added.push_back(l.b);
    lora_.push_back(l);
  }
  OCELLUS_CHECK(!lora_.empty(), "train: no linear layer of the text model matches the LoRA targets");
  for (const ag::Var& p : params_)
    if (p->name.rfind("model.", 0) == 0 || p->name.rfind("lm_head.", 0) == 0) p->requires_grad = false;
  params_.insert(params_.end(), added.begin(), added.end());
}

std::vector<std::pair<std::string, Tensor>> TrainableVlm::merged_tensors() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const ag::Var& p : params_) {
    if (p->name.find(".lora_") != std::string::npos) continue;
    Tensor t = p->value;
    for (const nn::Train::Adapter& l : lora_)
      if (l.weight == p.get()) {  // W + scale · B A
        Tensor ba = ops::matmul(l.b->value, l.a->value.transpose(0, 1).contiguous());  // [m, r] · [r, k]
        t = ops::add(t, ops::scale(ba, l.scale));
      }
    out.push_back({p->name, t});
  }
  return out;
}

}  // namespace ocellus::model
