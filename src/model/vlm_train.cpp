#include "ocellus/model/vlm_train.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "ocellus/ops/elementwise.h"
#include "ocellus/ops/matmul.h"

#include "ocellus/connect/connector.h"
#include "ocellus/core/error.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/ops/loss.h"

namespace ocellus::model {

TrainVlmConfig train_config_from_hf(const io::HfConfig& h) {
  OCELLUS_CHECK(h.text.has_value(), h.path, ": config.json describes no text model");
  const io::HfTextConfig& t = *h.text;
  OCELLUS_CHECK(t.model_type == "llama" || t.model_type == "qwen2", h.path, ": training supports the llama and qwen2 ",
                "text families, not '", t.model_type, "'");
  TrainVlmConfig c;
  lm::LmConfig& l = c.lm;
  l.arch = t.model_type;
  l.n_embd = t.hidden_size, l.n_ff = t.intermediate_size, l.n_layer = t.num_hidden_layers;
  l.n_head = t.num_attention_heads, l.n_head_kv = t.num_key_value_heads, l.head_dim = t.head_dim();
  l.n_vocab = t.vocab_size, l.n_ctx = t.max_position_embeddings;
  l.rope.n_rot = int64_t(double(l.head_dim) * t.partial_rotary_factor);
  l.rope.theta = float(t.rope_theta);
  l.rope.mode = ops::RopeMode::RotateHalf;
  l.rope.angles = ops::RopeAngles::Exact;
  l.norm = lm::NormKind::Rms;
  l.norm_eps = float(t.norm_eps);
  l.act = ops::Activation::Silu;
  l.validate();
  c.qkv_bias = t.qkv_bias || t.model_type == "qwen2";
  c.tied = t.tie_word_embeddings;
  OCELLUS_CHECK(h.vision.has_value(), h.path, ": config.json has no vision_config (the connector's input width)");
  c.d_vision = h.vision->hidden_size;
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
  OCELLUS_CHECK(c.connector == "mlp2x_gelu" || c.connector == "linear" || c.connector == "attn_blocks", h.path,
                ": training supports the mlp2x_gelu, linear and attn_blocks connectors, not '", c.connector, "'");
  return c;
}

ag::Var TrainableVlm::add_param(const io::TensorSource& s, const std::string& name, const Shape& shape, bool required) {
  const Tensor t = io::TensorReader{s, "train"}.get(name, shape, required);
  if (!t.defined()) return nullptr;
  ag::Var v = ag::leaf(t.to(DType::F32).contiguous().clone(), true, name);
  params_.push_back(v);
  file_names_[name] = s.file_name(name);
  return v;
}

const std::string& TrainableVlm::file_name(const std::string& param) const {
  const auto it = file_names_.find(param);
  if (it == file_names_.end()) fail("train: no parameter '", param, "' from the checkpoint");
  return it->second;
}

TrainableVlm::TrainableVlm(TrainVlmConfig c, const io::TensorSource& s_in) : c_(std::move(c)) {
  const lm::LmConfig& l = c_.lm;
  const io::TensorSource s = lm::hf_text_source(s_in);
  const int64_t d = l.n_embd, q = l.n_head * l.head_dim, kv = l.n_head_kv * l.head_dim;
  tok_embd_ = add_param(s, "model.embed_tokens.weight", {l.n_vocab, d});
  for (int i = 0; i < int(l.n_layer); ++i) {
    auto n = [&](const char* what) { return "model.layers." + std::to_string(i) + "." + what; };
    Layer L;
    L.attn_norm = add_param(s, n("input_layernorm.weight"), {d});
    L.wq = add_param(s, n("self_attn.q_proj.weight"), {q, d});
    L.bq = add_param(s, n("self_attn.q_proj.bias"), {q}, c_.qkv_bias);
    L.wk = add_param(s, n("self_attn.k_proj.weight"), {kv, d});
    L.bk = add_param(s, n("self_attn.k_proj.bias"), {kv}, c_.qkv_bias);
    L.wv = add_param(s, n("self_attn.v_proj.weight"), {kv, d});
    L.bv = add_param(s, n("self_attn.v_proj.bias"), {kv}, c_.qkv_bias);
    L.wo = add_param(s, n("self_attn.o_proj.weight"), {d, q});
    L.ffn_norm = add_param(s, n("post_attention_layernorm.weight"), {d});
    L.gate = add_param(s, n("mlp.gate_proj.weight"), {l.n_ff, d});
    L.up = add_param(s, n("mlp.up_proj.weight"), {l.n_ff, d});
    L.down = add_param(s, n("mlp.down_proj.weight"), {d, l.n_ff});
    layers_.push_back(L);
  }
  out_norm_ = add_param(s, "model.norm.weight", {d});
  output_ = c_.tied ? tok_embd_ : add_param(s, "lm_head.weight", {l.n_vocab, d}, false);
  if (!output_) output_ = tok_embd_;  // no lm_head: tied
  // The projector, under HF llava's names in the checkpoint's layout.
  io::TensorSource ps = s_in;
  if (s_in.has("model.multi_modal_projector.linear_1.weight"))
    ps = io::renamed_source(s_in, {{"multi_modal_projector.", "model.multi_modal_projector."}});
  if (c_.connector == "attn_blocks") {
    // Llama 3-V's connector: self-attention blocks at the vision width (64-wide heads, as the
    // inference loader reads them), then a projection to the LM's width.
    const int64_t dv = c_.d_connector_in();
    const std::string pre = "multi_modal_projector.";
    for (int i = 0; s_in.has(pre + "blocks." + std::to_string(i) + ".ln1.weight"); ++i) {
      const std::string b = pre + "blocks." + std::to_string(i) + ".";
      const int64_t ff = s_in.get(b + "ffn_up.weight").dim(0);
      EncoderBlock k;
      k.ln1_w = add_param(s_in, b + "ln1.weight", {dv}), k.ln1_b = add_param(s_in, b + "ln1.bias", {dv}, false);
      k.ln2_w = add_param(s_in, b + "ln2.weight", {dv}), k.ln2_b = add_param(s_in, b + "ln2.bias", {dv}, false);
      k.q = add_param(s_in, b + "attn.q.weight", {dv, dv}), k.q_b = add_param(s_in, b + "attn.q.bias", {dv}, false);
      k.k = add_param(s_in, b + "attn.k.weight", {dv, dv}), k.k_b = add_param(s_in, b + "attn.k.bias", {dv}, false);
      k.v = add_param(s_in, b + "attn.v.weight", {dv, dv}), k.v_b = add_param(s_in, b + "attn.v.bias", {dv}, false);
      k.o = add_param(s_in, b + "attn.out.weight", {dv, dv}), k.o_b = add_param(s_in, b + "attn.out.bias", {dv}, false);
      k.fc1 = add_param(s_in, b + "ffn_up.weight", {ff, dv}), k.fc1_b = add_param(s_in, b + "ffn_up.bias", {ff}, false);
      k.fc2 = add_param(s_in, b + "ffn_down.weight", {dv, ff}), k.fc2_b = add_param(s_in, b + "ffn_down.bias", {dv}, false);
      conn_blocks_.push_back(k);
    }
    OCELLUS_CHECK(!conn_blocks_.empty(), "train: attn_blocks connector without blocks (no ", pre, "blocks.0.ln1.weight)");
    proj1_w_ = add_param(s_in, pre + "proj.weight", {d, dv});
    proj1_b_ = add_param(s_in, pre + "proj.bias", {d}, false);
  } else if (c_.connector == "linear") {
    proj1_w_ = add_param(ps, "multi_modal_projector.linear_1.weight", {d, c_.d_connector_in()});
    proj1_b_ = add_param(ps, "multi_modal_projector.linear_1.bias", {d}, false);
  } else {
    proj1_w_ = add_param(ps, "multi_modal_projector.linear_1.weight", {d, c_.d_connector_in()});
    proj1_b_ = add_param(ps, "multi_modal_projector.linear_1.bias", {d}, false);
    proj2_w_ = add_param(ps, "multi_modal_projector.linear_2.weight", {d, d});
    proj2_b_ = add_param(ps, "multi_modal_projector.linear_2.bias", {d}, false);
  }
  if (c_.tower_from >= 0) {  // the tower's upper blocks, under canonical HF llava names
    const vision::VitConfig& v = c_.vit;
    OCELLUS_CHECK(c_.tower_from < v.n_layer_run, "train: tower_from ", c_.tower_from, " but the tower runs ", v.n_layer_run, " blocks");
    const io::TensorSource ts = io::renamed_source(s_in, {{"vision_tower.vision_model.", vision::find_hf_vit_prefix(s_in)}});
    const vision::VitNames n = vision::hf_vit_names("vision_tower.vision_model.");
    for (int64_t i = c_.tower_from; i < v.n_layer_run; ++i)
      tower_.push_back(tower_block(n, i, v.n_embd, v.n_ff, [&](const std::string& name, const Shape& shape, bool required) {
        return add_param(ts, name, shape, required);
      }));
    if (v.post_norm) post_ln_w_ = add_param(ts, n.post_ln_w, {v.n_embd}), post_ln_b_ = add_param(ts, n.post_ln_b, {v.n_embd}, false);
  }
}

EncoderBlock tower_block(const vision::VitNames& n, int64_t i, int64_t d, int64_t ff,
                         const std::function<ag::Var(const std::string&, const Shape&, bool)>& make) {
  auto at = [&](const std::string& pattern) { return io::gguf::name(pattern.c_str(), int(i)); };
  EncoderBlock b;
  b.ln1_w = make(at(n.ln1_w), {d}, true), b.ln1_b = make(at(n.ln1_b), {d}, false);
  b.ln2_w = make(at(n.ln2_w), {d}, true), b.ln2_b = make(at(n.ln2_b), {d}, false);
  b.q = make(at(n.q), {d, d}, true), b.q_b = make(at(n.q_b), {d}, false);
  b.k = make(at(n.k), {d, d}, true), b.k_b = make(at(n.k_b), {d}, false);
  b.v = make(at(n.v), {d, d}, true), b.v_b = make(at(n.v_b), {d}, false);
  b.o = make(at(n.o), {d, d}, true), b.o_b = make(at(n.o_b), {d}, false);
  b.fc1 = make(at(n.fc1), {ff, d}, true), b.fc1_b = make(at(n.fc1_b), {ff}, false);
  b.fc2 = make(at(n.fc2), {d, ff}, true), b.fc2_b = make(at(n.fc2_b), {d}, false);
  return b;
}

ag::Var encoder_block(const EncoderBlock& b, const ag::Var& h, int64_t n_head, ops::Activation act, float eps,
                      const std::vector<int64_t>& starts) {
  const int64_t n = h->value.dim(0), d = h->value.dim(1), hd = d / n_head;
  ops::AttentionParams ap;
  ap.scale = 1.0f / std::sqrt(float(hd));
  const ag::Var x = ag::layer_norm(h, b.ln1_w, b.ln1_b, eps);
  const ag::Var q = ag::reshape(ag::matmul(x, b.q, b.q_b), {n, n_head, hd});
  const ag::Var k = ag::reshape(ag::matmul(x, b.k, b.k_b), {n, n_head, hd});
  const ag::Var v = ag::reshape(ag::matmul(x, b.v, b.v_b), {n, n_head, hd});
  const ag::Var a = starts.size() == 2 ? ag::attention(q, k, v, ap) : ag::attention_segments(q, k, v, ap, starts);
  const ag::Var h1 = ag::add(h, ag::matmul(ag::reshape(a, {n, d}), b.o, b.o_b));
  const ag::Var f1 = ag::activate(act, ag::matmul(ag::layer_norm(h1, b.ln2_w, b.ln2_b, eps), b.fc1, b.fc1_b));
  return ag::add(h1, ag::matmul(f1, b.fc2, b.fc2_b));
}

ag::Var TrainableVlm::image_rows(const Tensor& f) const {
  ag::Var h = ag::constant(f);
  if (c_.tower_from >= 0) {  // the tower's upper blocks over the hidden state [n_pos, d_v]
    const vision::VitConfig& v = c_.vit;
    const int64_t np = f.dim(0), H = v.n_head;
    OCELLUS_CHECK(np == v.n_positions(), "train: a hidden state of ", np, " rows; the tower has ", v.n_positions(), " positions");
    for (const EncoderBlock& b : tower_) h = encoder_block(b, h, H, v.act, v.norm_eps, {0, np});
    if (v.post_norm) h = ag::layer_norm(h, post_ln_w_, post_ln_b_, v.norm_eps);
    const int64_t skip = np - v.n_features();
    if (skip > 0) h = ag::slice(h, 0, skip, np);
  }
  OCELLUS_CHECK(h->value.ndim() == 2 && h->value.dim(1) == c_.d_vision, "train: features of width ",
                h->value.ndim() == 2 ? h->value.dim(1) : -1, ", the tower's is ", c_.d_vision);
  if (c_.merge > 1) {  // spatial merge: a row gather into block order, then merge² rows side by side
    const int64_t n = h->value.dim(0), mm = c_.merge * c_.merge;
    h = ag::reshape(ag::embedding(h, connect::merge_order(n, c_.merge)), {n / mm, mm * c_.d_vision});
  }
  const int64_t n_head = std::max<int64_t>(1, c_.d_connector_in() / 64);
  for (const EncoderBlock& b : conn_blocks_) h = encoder_block(b, h, n_head, c_.connector_act, 1e-5f, {0, h->value.dim(0)});
  ag::Var r = ag::matmul(h, proj1_w_, proj1_b_);
  if (proj2_w_) r = ag::matmul(ag::activate(c_.connector_act, r), proj2_w_, proj2_b_);
  return r;
}

ag::Var TrainableVlm::param(const std::string& name) const {
  for (const ag::Var& p : params_)
    if (p->name == name) return p;
  fail("train: no parameter '", name, "'");
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
  OCELLUS_CHECK(n <= c_.lm.n_ctx || c_.lm.n_ctx <= 0, "train: sequence of ", n, " tokens is longer than the context (",
                c_.lm.n_ctx, ")");
  // Text runs embedded, image runs from the connector.
  std::vector<ag::Var> parts;
  size_t image = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    const bool img = s.ids[size_t(i)] < 0;
    while (j < n && (s.ids[size_t(j)] < 0) == img) ++j;
    if (!img) {
      parts.push_back(ag::embedding(tok_embd_, std::vector<int32_t>(s.ids.begin() + i, s.ids.begin() + j)));
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
  return ag::matmul(hidden_batch(batch), output_);  // [n, n_vocab]
}

ag::Var TrainableVlm::hidden_batch(const std::vector<TrainSample>& batch) const {
  const lm::LmConfig& l = c_.lm;
  OCELLUS_CHECK(!batch.empty(), "train: empty batch");
  const int64_t H = l.n_head, Hkv = l.n_head_kv, hd = l.head_dim;
  std::vector<ag::Var> rows;
  std::vector<int64_t> start{0};
  std::vector<int32_t> pos;
  for (const TrainSample& s : batch) {
    rows.push_back(input_rows(s));
    for (size_t i = 0; i < s.ids.size(); ++i) pos.push_back(int32_t(i));
    start.push_back(start.back() + int64_t(s.ids.size()));
  }
  const int64_t n = start.back();
  ag::Var x = rows.size() == 1 ? rows[0] : ag::concat(rows, 0);  // [n, d]
  ops::AttentionParams ap;
  ap.scale = 1.0f / std::sqrt(float(hd));
  ap.causal = true;
  for (const Layer& L : layers_) {
    const ag::Var h = ag::rms_norm(x, L.attn_norm, l.norm_eps);
    // q, k and v as one GEMM, unless an adapter sits on one of them or only some have biases.
    std::vector<ag::Var> qkv;
    const bool biases = L.bq && L.bk && L.bv;
    if (!has_adapter(L.wq) && !has_adapter(L.wk) && !has_adapter(L.wv) && (biases || (!L.bq && !L.bk && !L.bv)))
      qkv = ag::linear_split(h, {L.wq, L.wk, L.wv}, biases ? std::vector<ag::Var>{L.bq, L.bk, L.bv} : std::vector<ag::Var>{});
    else
      qkv = {linear(h, L.wq, L.bq), linear(h, L.wk, L.bk), linear(h, L.wv, L.bv)};
    const ag::Var q = ag::rope(ag::reshape(qkv[0], {n, H, hd}), pos, l.rope);
    const ag::Var k = ag::rope(ag::reshape(qkv[1], {n, Hkv, hd}), pos, l.rope);
    const ag::Var v = ag::reshape(qkv[2], {n, Hkv, hd});
    // Each sequence attends within itself.
    const ag::Var a = batch.size() == 1 ? ag::attention(q, k, v, ap) : ag::attention_segments(q, k, v, ap, start);
    x = ag::add(x, linear(ag::reshape(a, {n, H * hd}), L.wo, nullptr));
    const ag::Var h2 = ag::rms_norm(x, L.ffn_norm, l.norm_eps);
    // Gate and up as one GEMM, unless an adapter sits on either.
    const bool separate = has_adapter(L.gate) || has_adapter(L.up);
    const ag::Var act = separate ? ag::swiglu(linear(h2, L.gate, nullptr), linear(h2, L.up, nullptr)) : ag::swiglu_linear(h2, L.gate, L.up);
    x = ag::add(x, linear(act, L.down, nullptr));
  }
  return ag::rms_norm(x, out_norm_, l.norm_eps);
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
  return ag::cross_entropy(ag::matmul(ag::embedding(hidden_batch(batch), rows), output_), targets);
}

bool TrainableVlm::has_adapter(const ag::Var& w) const {
  return std::any_of(lora_.begin(), lora_.end(), [&](const auto& e) { return e.first == w.get(); });
}

ag::Var TrainableVlm::linear(const ag::Var& x, const ag::Var& w, const ag::Var& b) const {
  ag::Var y = ag::matmul(x, w, b);
  for (const auto& [node, l] : lora_)
    if (node == w.get()) return ag::add(y, ag::scale(ag::matmul(ag::matmul(x, l.a), l.b), l.scale));
  return y;
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
    Lora l{ag::leaf(a, true, stem + ".lora_A"), ag::leaf(Tensor::zeros({m, rank}), true, stem + ".lora_B"), alpha / float(rank)};
    added.push_back(l.a), added.push_back(l.b);
    lora_.push_back({p.get(), l});
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
    for (const auto& [node, l] : lora_)
      if (node == p.get()) {  // W + scale · B A
        Tensor ba = ops::matmul(l.b->value, l.a->value.transpose(0, 1).contiguous());  // [m, r] · [r, k]
        t = ops::add(t, ops::scale(ba, l.scale));
      }
    out.push_back({p->name, t});
  }
  return out;
}

std::vector<std::pair<std::string, Tensor>> TrainableVlm::tensors() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const ag::Var& p : params_) out.push_back({p->name, p->value});
  return out;
}

}  // namespace ocellus::model
