// Hugging Face LLaVA-style folders (transformers' llava before and after 4.52, TinyLLaVA) written
// from the fixture GGUF pair load as the same VLM: the image rows and the last logits equal those
// of the GGUF pair run with the same exact numerics. A folder with a byte-level BPE tokenizer and
// begin / end-of-image tokens runs through `ocellus run -m DIR`.
#include <algorithm>
#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>

#include "ocellus/connect/connector.h"
#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/lm/generate.h"
#include "ocellus/lm/lm.h"
#include "ocellus/model/vlm.h"
#include "ocellus/ops/shape.h"
#include "ocellus/text/chat.h"
#include "ocellus/vision/preprocess.h"
#include "testutil.h"

using namespace ocellus;

namespace {

const std::string kPeer = std::string(OCELLUS_FIXTURES) + "/peer/";
const std::string kMmproj = kPeer + "tiny-mmproj-clip-f32.gguf";

// Where each part of the checkpoint goes, from its plain name (model.layers.0..., lm_head.weight;
// vision_model....; multi_modal_projector.linear_1.weight).
struct Scheme {
  const char* name;
  std::string (*text)(const std::string&);
  std::string (*tower)(const std::string&);
  std::string (*proj)(const std::string&);
  const char* model_type;
};
const Scheme kSchemes[] = {
    {"transformers<4.52", [](const std::string& n) { return "language_model." + n; },
     [](const std::string& n) { return "vision_tower." + n; }, [](const std::string& n) { return n; }, "llava"},
    {"transformers>=4.52",
     [](const std::string& n) { return n.rfind("model.", 0) == 0 ? "model.language_model." + n.substr(6) : n; },
     [](const std::string& n) { return "model.vision_tower." + n; }, [](const std::string& n) { return "model." + n; },
     "llava"},
    {"tinyllava", [](const std::string& n) { return "language_model." + n; },
     [](const std::string& n) { return "vision_tower._vision_tower." + n; },
     [](const std::string& n) {
       const std::string p = "multi_modal_projector.linear_";
       return "connector._connector." + std::string(n[p.size()] == '1' ? "0" : "2") + n.substr(p.size() + 1);
     },
     "tinyllava"},
};

// The GGUF tower computed with exact float math (no llama.cpp rounding emulation).
vision::VisionTower exact_tower(const io::GgufFile& f) {
  vision::VitConfig c = model::load_mmproj(kMmproj)->config();
  c.act_ggml_f16 = false, c.ggml_order = false;
  return vision::VisionTower(c, vision::load_vit_weights(c, io::gguf_source(f), vision::gguf_vit_names()));
}

// The GGUF text model with exact numerics, as the Hugging Face path computes.
lm::LanguageModel exact_lm(const lm::LanguageModel& m) {
  lm::LmConfig c = m.config();
  c.rope.angles = ops::RopeAngles::Exact;
  c.gelu_f16_table = false, c.prescale_q = false, c.f32_ggml_order = false;
  return lm::LanguageModel(c, m.weights());
}

// Writes the folder: text model `lm`, the fixture tower, projector weights `proj` (plain HF names).
std::string write_folder(const std::string& name, const Scheme& s, const lm::LanguageModel& lm,
                         const std::vector<std::pair<std::string, Tensor>>& proj, const std::string& act,
                         const nlohmann::json& extra = {}) {
  const std::string dir = test::temp_path(name);
  EXPECT_EQ(std::system(("rm -rf " + dir + " && mkdir -p " + dir).c_str()), 0);
  const io::GgufFile f = io::GgufFile::open(kMmproj);
  const vision::VisionTower tower = exact_tower(f);
  std::vector<std::pair<std::string, Tensor>> t;
  for (auto& [n, x] : lm::hf_tensors(lm)) t.push_back({s.text(n), x});
  for (auto& [n, x] : vision::vit_tensors_as(tower.config(), io::gguf_source(f), vision::gguf_vit_names(),
                                              vision::hf_vit_names("vision_model.")))
    t.push_back({s.tower(n), x});
  for (auto& [n, x] : proj) t.push_back({s.proj(n), x});
  io::write_safetensors_sharded(dir, t, 1 << 20);
  const vision::VitConfig& c = tower.config();
  nlohmann::json j = extra.is_null() ? nlohmann::json::object() : extra;
  j["model_type"] = s.model_type;
  j["text_config"] = nlohmann::json::parse(lm::hf_config_json(lm));
  j["vision_config"] = {{"model_type", "clip_vision_model"}, {"hidden_size", c.n_embd}, {"intermediate_size", c.n_ff},
                        {"num_hidden_layers", c.n_layer}, {"num_attention_heads", c.n_head},
                        {"image_size", c.image_size}, {"patch_size", c.patch_size}, {"layer_norm_eps", c.norm_eps},
                        {"hidden_act", "quick_gelu"}};
  j["vision_feature_layer"] = -2;
  j["vision_feature_select_strategy"] = "default";
  if (std::string(s.model_type) == "tinyllava") j["connector_type"] = "mlp2x_gelu";
  else j["projector_hidden_act"] = act;
  std::ofstream(dir + "/config.json") << j.dump(2);
  return dir;
}

std::vector<std::pair<std::string, Tensor>> fixture_projector(const io::GgufFile& f) {
  return {{"multi_modal_projector.linear_1.weight", f.tensor("mm.0.weight")},
          {"multi_modal_projector.linear_1.bias", f.tensor("mm.0.bias")},
          {"multi_modal_projector.linear_2.weight", f.tensor("mm.2.weight")},
          {"multi_modal_projector.linear_2.bias", f.tensor("mm.2.bias")}};
}

Tensor fixture_pixels() {
  const std::vector<float> v = test::read_array<float>(kPeer + "mmproj-clip-f32.pixels.f32");
  return vision::hwc_to_chw(Tensor::from_vector({32, 32, 3}, v));
}

}  // namespace

TEST(VlmHf, LlavaFoldersAreTheGgufPair) {
  const io::GgufFile tf = io::GgufFile::open(kPeer + "tiny-llama-f32.gguf"), vf = io::GgufFile::open(kMmproj);
  const auto gguf_lm = lm::load_gguf(tf);
  const lm::LanguageModel ref_lm = exact_lm(*gguf_lm);
  const vision::VisionTower ref_tower = exact_tower(vf);
  const Tensor pix = fixture_pixels();
  const std::vector<int32_t> before = test::read_array<int32_t>(kPeer + "vlm-llama-clip.before.i32");
  const std::vector<int32_t> after = test::read_array<int32_t>(kPeer + "vlm-llama-clip.after.i32");
  for (const Scheme& s : kSchemes) {
    SCOPED_TRACE(s.name);
    const bool tiny = std::string(s.model_type) == "tinyllava";
    const char* act = tiny ? "gelu" : "gelu_pytorch_tanh";
    const std::string dir = write_folder("llava_" + std::string(s.model_type) + std::to_string(&s - kSchemes), s,
                                         *gguf_lm, fixture_projector(vf), act);
    connect::ConnectorConfig cc;
    cc.d_in = 48, cc.d_out = 64, cc.act = ops::parse_activation(act);
    const auto ref_conn = connect::load_connector("mlp", cc, io::gguf_source(vf), connect::Layout::Gguf);
    const Tensor feats = ref_tower.encode({pix});
    const Tensor want_rows = ref_conn->forward(feats.reshape({feats.dim(1), feats.dim(2)}));

    const auto vision = model::load_hf_vision(dir);
    EXPECT_EQ(vision->config().n_layer_run, 2);
    EXPECT_EQ(vision->connector().type(), "mlp2x_gelu");
    const Tensor rows = vision->embed({pix})[0];
    std::printf("%s: rows %.3g\n", s.name, test::rel_err(rows, want_rows));
    EXPECT_LE(test::rel_err(rows, want_rows), 1e-6);

    const auto hf_lm = lm::load_model(dir);
    auto last_logits = [&](const lm::LanguageModel& m, const Tensor& img) {
      const Tensor x = ops::concat({m.embed(before), img, m.embed(after)}, 0);
      lm::KvCache cache(m.config(), x.dim(0), DType::F32);
      return m.forward(x, cache, false);
    };
    const double e = test::rel_err(last_logits(*hf_lm, rows), last_logits(ref_lm, want_rows));
    std::printf("%s: last logits %.3g\n", s.name, e);
    EXPECT_LE(e, 1e-5);
    std::system(("rm -rf " + dir).c_str());
  }
}

TEST(VlmHf, BpeFolderRunsWithImageMarkers) {
  // qwen2 (n_embd 32, GPT-2 vocabulary) with the fixture tower and a random 48 -> 32 projector.
  const io::GgufFile tf = io::GgufFile::open(kPeer + "tiny-qwen2-f32.gguf");
  const auto qwen = lm::load_gguf(tf);
  const std::vector<std::pair<std::string, Tensor>> proj = {
      {"multi_modal_projector.linear_1.weight", test::randn({32, 48}, 1, 0.1f)},
      {"multi_modal_projector.linear_1.bias", test::randn({32}, 2, 0.1f)},
      {"multi_modal_projector.linear_2.weight", test::randn({32, 32}, 3, 0.1f)},
      {"multi_modal_projector.linear_2.bias", test::randn({32}, 4, 0.1f)}};
  const std::string dir = write_folder("llava_qwen2", kSchemes[1], *qwen, proj, "gelu",
                                       {{"vision_start_token_id", 50256}, {"vision_end_token_id", 50256}});
  text::Tokenizer::from_gguf(tf).save_hf_json(dir + "/tokenizer.json");

  const model::Vlm v = model::load_vlm(dir, "");
  EXPECT_EQ(v.vision->markers().begin, "<|endoftext|>");
  EXPECT_EQ(v.vision->markers().end, "<|endoftext|>");
  const Tensor rows = v.vision->embed({fixture_pixels()})[0];
  const model::Spliced sp = model::splice_prompt(*v.lm, model::plan_splice(v.tok, "A<image>B", 1, false, "<image>", v.vision->markers()), {rows});
  ASSERT_EQ(sp.ids.size(), size_t(2 + 16 + 2));
  EXPECT_EQ(sp.ids[0], v.tok.encode("A", false)[0]);
  EXPECT_EQ(sp.ids[1], 50256);
  for (size_t i = 2; i < 18; ++i) EXPECT_EQ(sp.ids[i], -1);
  EXPECT_EQ(sp.ids[18], 50256);
  EXPECT_EQ(sp.ids[19], v.tok.encode("B", false)[0]);

  // The CLI on the folder: no --mmproj, the chat template from the folder (qwen2: ChatML).
  const std::string out = dir + "/run.txt";
  const std::string cmd = std::string(OCELLUS_CLI) + " run -m " + dir + " --image " + OCELLUS_FIXTURES +
                          "/images/llama1-logo.png -p 'What is this?' -n 3 > " + out + " 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << test::read_file(out);
  EXPECT_NE(test::read_file(out).find("image encode:"), std::string::npos) << test::read_file(out);
  std::system(("rm -rf " + dir).c_str());
}

TEST(VlmHf, ChatPromptsCarryOneBos) {
  // Llama 2's template writes "<s>" itself: with the vocabulary's add_bos the splice must not add
  // another; Vicuna's relies on the tokenizer's.
  const io::GgufFile tf = io::GgufFile::open(kPeer + "tiny-llama-f32.gguf");
  const auto lm = lm::load_gguf(tf);
  const text::Tokenizer tok = text::Tokenizer::from_gguf(tf);
  ASSERT_TRUE(tok.add_bos());
  for (text::ChatTemplate t : {text::ChatTemplate::Llama2, text::ChatTemplate::Vicuna}) {
    const std::string prompt = text::render_chat_text(t, {{"user", "<image>\nHi"}}, true);
    const model::Spliced sp = model::splice_prompt(*lm, model::plan_splice(tok, prompt, 1, tok.add_bos() && text::bos_from_tokenizer(t)),
                                                   {test::randn({16, 64}, 1)});
    EXPECT_EQ(std::count(sp.ids.begin(), sp.ids.end(), tok.bos()), 1) << text::chat_template_name(t);
    EXPECT_EQ(sp.ids[0], tok.bos()) << text::chat_template_name(t);
  }
}

TEST(VlmHf, FolderErrorsNameTheProblem) {
  const io::GgufFile tf = io::GgufFile::open(kPeer + "tiny-qwen2-f32.gguf");
  const auto qwen = lm::load_gguf(tf);
  // A GGUF text model alone: the image half is missing.
  try {
    model::load_vlm(kPeer + "tiny-qwen2-f32.gguf", "");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--mmproj"), std::string::npos) << e.what();
  }
  // A folder without projector weights.
  const std::string dir = write_folder("llava_noproj", kSchemes[0], *qwen, {}, "gelu");
  try {
    model::load_hf_vision(dir);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no projector weights"), std::string::npos) << e.what();
  }
  std::system(("rm -rf " + dir).c_str());
  // The fixture tower's rows (64 wide after the fixture projector) do not fit qwen2 (32).
  const io::GgufFile vf = io::GgufFile::open(kMmproj);
  const std::string d2 = write_folder("llava_mismatch", kSchemes[0], *qwen, fixture_projector(vf), "gelu");
  try {
    model::load_hf_vision(d2);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("multi_modal_projector.linear_1.weight"), std::string::npos) << e.what();
  }
  std::system(("rm -rf " + d2).c_str());
}
