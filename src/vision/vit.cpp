#include "ocellus/vision/vit.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "ocellus/core/error.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/io/file.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/ops/elementwise.h"

namespace ocellus::vision {
void VitConfig::validate(const std::string& where) const {
  const std::string p = (where.empty() ? "" : where + ": ") + "vision: ";
  // Not necessarily a multiple: SigLIP-so400m/14 at 384 px has 27x27 patches, the last 6 px unused.
  OCELLUS_CHECK(image_size > 0 && patch_size > 0 && patch_size <= image_size, p, "patch size ", patch_size,
                " must be positive and at most the image size ", image_size);
  OCELLUS_CHECK(n_embd > 0 && n_head > 0 && n_embd % n_head == 0, p, "width ", n_embd,
                " must be a positive multiple of the head count ", n_head);
  OCELLUS_CHECK(n_ff > 0, p, "MLP width ", n_ff, " must be > 0");
  OCELLUS_CHECK(n_layer > 0 && n_layer <= 1024, p, "block count ", n_layer, " out of range");
  OCELLUS_CHECK(n_layer_run > 0 && n_layer_run <= n_layer, p, "feature layer runs ", n_layer_run,
                " blocks, but the tower has ", n_layer);
  OCELLUS_CHECK(norm_eps > 0 && std::isfinite(norm_eps), p, "LayerNorm epsilon ", norm_eps, " must be > 0");
  OCELLUS_CHECK(grid() <= 1024, p, grid(), "x", grid(), " patches is beyond any known tower");
  try {
    preprocess.validate();
  } catch (const Error& e) {
    fail(p, e.what());
  }
  OCELLUS_CHECK(preprocess.size == image_size, p, "preprocessing size ", preprocess.size,
                " differs from the tower's image size ", image_size);
}

VitNames gguf_vit_names() {
  namespace tn = io::gguf::tensor;
  VitNames n;
  n.patch_w = tn::kVPatchEmbd, n.patch_b = tn::kVPatchEmbdBias, n.class_embd = tn::kVClassEmbd;
  n.pos_embd = tn::kVPositionEmbd, n.pre_ln_w = tn::kVPreLn, n.pre_ln_b = tn::kVPreLnBias;
  n.post_ln_w = tn::kVPostLn, n.post_ln_b = tn::kVPostLnBias;
  n.ln1_w = tn::kVLn1, n.ln1_b = tn::kVLn1Bias, n.ln2_w = tn::kVLn2, n.ln2_b = tn::kVLn2Bias;
  n.q = tn::kVAttnQ, n.q_b = tn::kVAttnQBias, n.k = tn::kVAttnK, n.k_b = tn::kVAttnKBias;
  n.v = tn::kVAttnV, n.v_b = tn::kVAttnVBias, n.o = tn::kVAttnOut, n.o_b = tn::kVAttnOutBias;
  n.fc1 = tn::kVFfnFirst, n.fc1_b = tn::kVFfnFirstBias, n.fc2 = tn::kVFfnSecond, n.fc2_b = tn::kVFfnSecondBias;
  return n;
}

VitNames hf_vit_names(const std::string& p) {
  VitNames n;
  const std::string e = p + "embeddings.", l = p + "encoder.layers.%d.";
  n.patch_w = e + "patch_embedding.weight", n.patch_b = e + "patch_embedding.bias";
  n.class_embd = e + "class_embedding", n.pos_embd = e + "position_embedding.weight";
  n.pre_ln_w = p + "pre_layrnorm.weight", n.pre_ln_b = p + "pre_layrnorm.bias";
  n.post_ln_w = p + "post_layernorm.weight", n.post_ln_b = p + "post_layernorm.bias";
  n.ln1_w = l + "layer_norm1.weight", n.ln1_b = l + "layer_norm1.bias";
  n.ln2_w = l + "layer_norm2.weight", n.ln2_b = l + "layer_norm2.bias";
  n.q = l + "self_attn.q_proj.weight", n.q_b = l + "self_attn.q_proj.bias";
  n.k = l + "self_attn.k_proj.weight", n.k_b = l + "self_attn.k_proj.bias";
  n.v = l + "self_attn.v_proj.weight", n.v_b = l + "self_attn.v_proj.bias";
  n.o = l + "self_attn.out_proj.weight", n.o_b = l + "self_attn.out_proj.bias";
  n.fc1 = l + "mlp.fc1.weight", n.fc1_b = l + "mlp.fc1.bias", n.fc2 = l + "mlp.fc2.weight", n.fc2_b = l + "mlp.fc2.bias";
  return n;
}

VitConfig vit_config_from_hf(const io::HfVisionConfig& v, int64_t feature_layer, const std::string& where) {
  const std::string p = (where.empty() ? "" : where + ": ") + "vision: ";
  const bool siglip = v.model_type.rfind("siglip", 0) == 0;
  OCELLUS_CHECK(siglip || v.model_type.rfind("clip", 0) == 0, p, "model_type '", v.model_type,
                "' is not a tower ocellus runs (clip_vision_model, siglip_vision_model)");
  OCELLUS_CHECK(v.num_channels == 3, p, "num_channels ", v.num_channels, " (only RGB towers are supported)");
  VitConfig c;
  c.kind = siglip ? "siglip" : "clip";
  c.image_size = v.image_size, c.patch_size = v.patch_size, c.n_embd = v.hidden_size, c.n_ff = v.intermediate_size;
  c.n_head = v.num_attention_heads, c.n_layer = v.num_hidden_layers, c.norm_eps = float(v.layer_norm_eps);
  try {
    c.act = ops::parse_activation(v.hidden_act);
  } catch (const Error& e) {
    fail(p, "hidden_act: ", e.what());
  }
  c.class_token = c.pre_norm = !siglip;
  c.drop_class_token = true;
  const int64_t L = c.n_layer;
  OCELLUS_CHECK(feature_layer >= -L && feature_layer <= L, p, "feature layer ", feature_layer, " outside [-", L,
                ", ", L, "] for a tower of ", L, " blocks (num_hidden_layers)");
  if (feature_layer == 0) {
    c.n_layer_run = L, c.post_norm = siglip;  // CLIP's post_layernorm only feeds its pooled output
  } else {
    c.n_layer_run = feature_layer < 0 ? L + 1 + feature_layer : feature_layer;
    c.post_norm = false;
    OCELLUS_CHECK(c.n_layer_run > 0, p, "feature layer ", feature_layer, " selects the embeddings, not a block");
  }
  c.preprocess.size = int(c.image_size);
  if (siglip) {
    c.preprocess.mode = PreprocessConfig::Mode::Squash;
    c.preprocess.mean = {0.5f, 0.5f, 0.5f}, c.preprocess.std = {0.5f, 0.5f, 0.5f};
  } else {
    c.preprocess.mode = PreprocessConfig::Mode::ShortestEdge;
  }
  return c;
}

std::string find_hf_vit_prefix(const io::TensorSource& s) {
  static const char* kPrefixes[] = {"vision_model.", "vision_tower.vision_model.", "model.vision_tower.vision_model.",
                                    "model.vision_tower.vision_tower.vision_model.",
                                    "vision_tower._vision_tower.vision_model."};  // TinyLLaVA
  std::string tried;
  for (const char* p : kPrefixes) {
    if (s.has(std::string(p) + "embeddings.patch_embedding.weight")) return p;
    tried += std::string(tried.empty() ? "" : ", ") + p + "embeddings.patch_embedding.weight";
  }
  fail("vision: ", s.path, ": no vision tower found (looked for ", tried, ")");
}

VisionTower load_hf_tower(const std::string& dir, int64_t feature_layer) {
  const io::HfConfig cfg = io::read_hf_config(dir);
  OCELLUS_CHECK(cfg.vision.has_value(), "vision: ", dir, ": config.json describes no vision tower");
  VitConfig c = vit_config_from_hf(*cfg.vision, feature_layer, dir + "/config.json");
  const std::string pp = dir + "/preprocessor_config.json";
  if (io::is_file(pp)) c.preprocess = read_preprocessor_config(pp, c.preprocess);
  OCELLUS_CHECK(c.preprocess.size == c.image_size, "vision: ", pp, ": images are resized to ", c.preprocess.size,
                " px, but the tower takes ", c.image_size);
  c.validate(dir + "/config.json");
  const io::SafetensorsModel m = io::SafetensorsModel::open(dir);
  const io::TensorSource src = io::safetensors_source(m, dir);
  VitWeights w = load_vit_weights(c, src, hf_vit_names(find_hf_vit_prefix(src)));
  return VisionTower(c, std::move(w));
}

std::vector<std::pair<std::string, Tensor>> vit_tensors_as(const VitConfig& c, const io::TensorSource& s, const VitNames& from,
                                                           const VitNames& to) {
  return nn::tensors_as(s, "vision tower names",
                        [&](const nn::Maker<nn::Infer>& mk, bool second) { load_vit(mk, c, second ? to : from); });
}

template <class F>
Vit<F> load_vit(const nn::Maker<F>& mk, const VitConfig& c, const VitNames& n, int64_t upper_from) {
  const int64_t d = c.n_embd, p = c.patch_size;
  Vit<F> w;
  if (upper_from < 0) {
    w.patch_w = mk.tensor(n.patch_w, {d, 3, p, p}, true), w.patch_b = mk.tensor(n.patch_b, {d}, false);
    if (c.class_token) w.class_embd = mk.tensor(n.class_embd, {d}, true);
    w.pos_embd = mk.tensor(n.pos_embd, {c.n_positions(), d}, true);
    if (c.pre_norm) w.pre_ln_w = mk.tensor(n.pre_ln_w, {d}, true), w.pre_ln_b = mk.tensor(n.pre_ln_b, {d}, false);
  }
  for (int64_t i = std::max<int64_t>(upper_from, 0); i < c.n_layer_run; ++i)
    w.blocks.push_back(load_encoder_block(mk, n, i, d, c.n_ff));
  if (c.post_norm) w.post_ln_w = mk.tensor(n.post_ln_w, {d}, true), w.post_ln_b = mk.tensor(n.post_ln_b, {d}, false);
  return w;
}
template Vit<nn::Infer> load_vit(const nn::Maker<nn::Infer>&, const VitConfig&, const VitNames&, int64_t);
template Vit<nn::Train> load_vit(const nn::Maker<nn::Train>&, const VitConfig&, const VitNames&, int64_t);

VitWeights load_vit_weights(const VitConfig& c, const io::TensorSource& s, const VitNames& n) {
  c.validate(s.path);
  VitWeights w = load_vit(nn::file_maker(s, "vision"), c, n);
  if (w.patch_w.is_mapped()) w.patch_w = w.patch_w.clone();
  w.pos_embd = w.pos_embd.to(DType::F32);
  return w;
}

VisionTower::VisionTower(VitConfig c, VitWeights w) : c_(std::move(c)), w_(std::move(w)) {
  c_.validate();
  OCELLUS_CHECK(int64_t(w_.blocks.size()) >= c_.n_layer_run, "vision: ", w_.blocks.size(), " blocks loaded, ",
                c_.n_layer_run, " needed");
}

nn::Infer vit_context(const VitConfig& c) {
  nn::Infer f;
  f.ggml_matmul = f.ggml_norm = f.ggml_attention = c.ggml_order;
  f.act_f16 = c.act_ggml_f16;
  return f;
}

Tensor VisionTower::encode(const std::vector<Tensor>& images) const {
  const int64_t B = int64_t(images.size()), d = c_.n_embd, np = c_.n_positions();
  const Tensor h = hidden(images, c_.n_layer_run).reshape({B * np, d});
  return vit_features(vit_context(c_), c_, h, w_.post_ln_w, w_.post_ln_b).reshape({B, c_.n_features(), d});
}

Tensor VisionTower::hidden(const std::vector<Tensor>& images, int64_t blocks) const {
  OCELLUS_CHECK(blocks >= 0 && blocks <= c_.n_layer_run, "vision: hidden state after ", blocks, " blocks of ", c_.n_layer_run);
  const nn::Infer f = vit_context(c_);
  const std::span<const VitBlock> run(w_.blocks.data(), size_t(blocks));
  const Tensor h = vit_blocks(f, c_, run, vit_embeddings(f, c_, w_, images));
  return h.reshape({int64_t(images.size()), c_.n_positions(), c_.n_embd});
}

}  // namespace ocellus::vision
