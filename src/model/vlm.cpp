#include "ocellus/model/vlm.h"

#include <algorithm>
#include <cstring>

#include "ocellus/core/error.h"
#include "ocellus/gen/fusion_model.h"
#include "ocellus/io/file.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/lm/lm.h"
#include "ocellus/text/tokenizer.h"
#include "ocellus/vision/preprocess.h"

namespace ocellus::model {

std::vector<Tensor> VisionModel::embed(const std::vector<Tensor>& pixels) const {
  const Tensor feats = tower_.encode(pixels);  // [B, n_features, d_vision]
  std::vector<Tensor> out;
  const int64_t nf = feats.dim(1), dv = feats.dim(2);
  for (int64_t b = 0; b < feats.dim(0); ++b) {
    Tensor rows = connector_->forward(feats.slice(0, b, b + 1).reshape({nf, dv}));  // [n_tok, n_embd_out]
    OCELLUS_CHECK(rows.ndim() == 2 && rows.dim(1) == n_embd_out_, "connector ", connector_->type(), " produced ",
                  rows.shape().str(), ", expected [n, ", n_embd_out_, "]");
    out.push_back(std::move(rows));
  }
  return out;
}

Tensor VisionModel::embed(const io::ImageRgb8& image) const {
  return embed(std::vector<Tensor>{vision::preprocess(image, config().preprocess)})[0];
}

namespace {

// Where a Hugging Face checkpoint keeps its projector: the layout whose names the connector
// files know, and the prefix that layout's names start with in this checkpoint.
struct ProjectorPlace {
  connect::Layout layout;
  const char* layout_prefix;
  const char* prefix;
};
const ProjectorPlace kProjectorPlaces[] = {
    {connect::Layout::HfLlava, "multi_modal_projector.", "multi_modal_projector."},        // transformers < 4.52
    {connect::Layout::HfLlava, "multi_modal_projector.", "model.multi_modal_projector."},  // transformers >= 4.52
    {connect::Layout::LlavaOriginal, "model.mm_projector.", "model.mm_projector."},        // LLaVA's own
    {connect::Layout::LlavaOriginal, "model.mm_projector.", "connector._connector."},      // TinyLLaVA
};

}  // namespace

std::unique_ptr<VisionModel> load_hf_vision(const std::string& dir) {
  const io::HfConfig cfg = io::read_hf_config(dir);
  OCELLUS_CHECK(cfg.vision.has_value(), dir, ": config.json has no vision_config: not a LLaVA-style folder (give the image half with --mmproj)");
  OCELLUS_CHECK(cfg.text.has_value(), dir, ": config.json describes no text model, so the projector's output width is unknown");
  const io::HfProjectorConfig p = cfg.projector.value_or(io::HfProjectorConfig{});
  const std::string cfg_path = dir + "/config.json";
  vision::VitConfig c = vision::vit_config_from_hf(*cfg.vision, p.vision_feature_layer, cfg_path);
  c.drop_class_token = p.vision_feature_select == "patch";
  if (p.image_aspect_ratio == "pad" && c.preprocess.mode == vision::PreprocessConfig::Mode::ShortestEdge)
    c.preprocess.mode = vision::PreprocessConfig::Mode::Pad;
  const std::string pp = dir + "/preprocessor_config.json";
  if (io::is_file(pp)) c.preprocess = vision::read_preprocessor_config(pp, c.preprocess);
  OCELLUS_CHECK(c.preprocess.size == c.image_size, pp, ": images are resized to ", c.preprocess.size,
                " px, but the tower takes ", c.image_size);
  c.validate(cfg_path);
  connect::ConnectorConfig cc;
  cc.d_in = c.n_embd;
  cc.d_out = cfg.text->hidden_size;
  try {
    cc.act = ops::parse_activation(p.hidden_act);
  } catch (const Error& e) {
    fail(cfg_path, ": the projector's activation: ", e.what());
  }
  cc.merge = p.spatial_merge_size;
  OCELLUS_CHECK(cc.merge >= 1 && c.grid() % cc.merge == 0, cfg_path, ": spatial_merge_size ", cc.merge, " does not divide the ",
                c.grid(), "x", c.grid(), " patch grid");

  const io::SafetensorsModel m = io::SafetensorsModel::open(dir);
  const io::TensorSource src = io::safetensors_source(m, dir);
  std::string tower_prefix;
  try {
    tower_prefix = vision::find_hf_vit_prefix(src);
  } catch (const Error&) {
    fail(dir, ": config.json describes a vision tower, but its weights are not in the folder",
         p.vision_tower.empty() ? std::string() : " (the config names '" + p.vision_tower + "'; such checkpoints load the tower separately)");
  }
  vision::VitWeights w = vision::load_vit_weights(c, src, vision::hf_vit_names(tower_prefix));

  const std::vector<std::string> names = m.names();
  const ProjectorPlace* place = std::ranges::find_if(kProjectorPlaces, [&](const ProjectorPlace& pl) {
    return std::ranges::any_of(names, [&](const std::string& n) { return n.starts_with(pl.prefix); });
  });
  OCELLUS_CHECK(place != std::end(kProjectorPlaces), dir, ": no projector weights (looked for multi_modal_projector.*, model.multi_modal_projector.*, ",
                "model.mm_projector.*, connector._connector.*)");
  const io::TensorSource psrc = io::renamed_source(src, {{place->layout_prefix, place->prefix}});
  auto conn = connect::load_connector(p.type, cc, psrc, place->layout);
  return std::make_unique<VisionModel>(vision::VisionTower(c, std::move(w)), std::move(conn), cc.d_out);
}

Vlm load_vlm(const std::string& model, const std::string& mmproj) {
  Vlm v;
  if (io::is_directory(model) && gen::is_fusion_folder(model)) {
    // A LlamaFusion model added image modules to a VLM's language model: its text path is that
    // model (with the base's projector, the VLM again), its vocabulary the base's.
    OCELLUS_CHECK(!mmproj.empty(), model, ": a LlamaFusion folder reads images through its base VLM's projector: give --mmproj");
    v.lm = gen::load_fusion_text(model, &v.text_file);
    v.tok = text::Tokenizer::from_file(v.text_file);
  } else {
    v.lm = lm::load_model(model);
    v.tok = text::Tokenizer::from_file(model);
    v.text_file = model;
  }
  if (!mmproj.empty()) {
    v.vision = load_mmproj(mmproj);
  } else {
    OCELLUS_CHECK(io::is_directory(model), model, ": a GGUF text model needs its vision projector: give --mmproj");
    v.vision = load_hf_vision(model);
    // Begin / end-of-image tokens the config names (ids) become their text.
    const io::HfConfig cfg = io::read_hf_config(model);
    if (cfg.projector) {
      ImageMarkers mk;
      auto text_of = [&](int64_t id, const char* what) {
        if (id < 0) return std::string();
        OCELLUS_CHECK(id < v.tok.n_vocab(), model, ": ", what, " token id ", id, " is outside the vocabulary (", v.tok.n_vocab(), ")");
        return v.tok.piece(int32_t(id));
      };
      mk.begin = text_of(cfg.projector->image_begin_token_id, "begin-of-image");
      mk.end = text_of(cfg.projector->image_end_token_id, "end-of-image");
      if (!mk.begin.empty() || !mk.end.empty()) v.vision->set_markers(mk);
    }
  }
  OCELLUS_CHECK(v.vision->n_embd_out() == v.lm->config().n_embd, mmproj.empty() ? model : mmproj,
                ": the vision projector makes rows of width ", v.vision->n_embd_out(), ", but the text model ", model,
                " has n_embd ", v.lm->config().n_embd, " (they do not belong together)");
  return v;
}

SplicePlan plan_splice(const text::Tokenizer& tok, const std::string& prompt, size_t n_images, bool add_bos,
                       const std::string& marker, const ImageMarkers& around) {
  std::vector<std::string> pieces;
  size_t at = 0;
  for (size_t p; (p = prompt.find(marker, at)) != std::string::npos; at = p + marker.size())
    pieces.push_back(prompt.substr(at, p - at));
  pieces.push_back(prompt.substr(at));
  OCELLUS_CHECK(pieces.size() - 1 == n_images, "the prompt has ", pieces.size() - 1, " ", marker, " placeholder(s) for ", n_images,
                " image(s)");
  SplicePlan plan;
  for (size_t i = 0; i < pieces.size(); ++i) {
    std::vector<int32_t> ids;
    if (i == 0 && add_bos && tok.bos() >= 0) ids.push_back(tok.bos());
    std::string text = pieces[i];
    if (i > 0) text = around.end + text;                   // after image i-1
    if (i < n_images) text += around.begin;                // before image i
    if (!text.empty()) {
      const std::vector<int32_t> t = tok.encode(text, false, true);
      ids.insert(ids.end(), t.begin(), t.end());
    }
    plan.n_text += int64_t(ids.size());
    plan.text_ids.push_back(std::move(ids));
  }
  return plan;
}

Spliced splice_prompt(const lm::LanguageModel& lm, const SplicePlan& plan, const std::vector<Tensor>& image_rows) {
  OCELLUS_CHECK(plan.text_ids.size() == image_rows.size() + 1, "the prompt has ", plan.text_ids.size() - 1,
                " image placeholder(s) for ", image_rows.size(), " image(s)");
  const int64_t d = lm.config().n_embd;
  Spliced s;
  std::vector<Tensor> parts;
  for (size_t i = 0; i < plan.text_ids.size(); ++i) {
    const std::vector<int32_t>& ids = plan.text_ids[i];
    if (!ids.empty()) {
      parts.push_back(lm.embed(ids));
      s.ids.insert(s.ids.end(), ids.begin(), ids.end());
    }
    if (i < image_rows.size()) {
      const Tensor& r = image_rows[i];
      OCELLUS_CHECK(r.ndim() == 2 && r.dim(1) == d, "image ", i, " has rows of width ", r.ndim() == 2 ? r.dim(1) : -1,
                    ", but the language model's n_embd is ", d, " (mmproj and text model do not belong together)");
      parts.push_back(r);
      s.ids.insert(s.ids.end(), size_t(r.dim(0)), -1);
    }
  }
  const int64_t n = int64_t(s.ids.size());  // one id per row
  OCELLUS_CHECK(n > 0, "empty prompt");
  s.embeddings = Tensor::empty({n, d});
  int64_t row = 0;
  for (const Tensor& p : parts) {
    const Tensor c = p.contiguous();
    std::memcpy(s.embeddings.data<float>() + row * d, c.data<float>(), size_t(c.numel()) * sizeof(float));
    row += c.dim(0);
  }
  return s;
}

}  // namespace ocellus::model
