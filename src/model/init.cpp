#include "ocellus/io/json.h"
#include "ocellus/model/init.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/io/file.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/lm/family.h"
#include "ocellus/core/tensor.h"
#include "ocellus/connect/connector.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/lm/lm.h"
#include "ocellus/nn/forward.h"
#include "ocellus/vision/vit.h"

namespace ocellus::model {

void InitSpec::validate() const {
  auto pos = [](int64_t v, const char* n) { OCELLUS_CHECK(v > 0, "init: ", n, " must be > 0 (got ", v, ")"); };
  pos(n_embd, "n_embd"), pos(n_ff, "n_ff"), pos(n_layer, "n_layer"), pos(n_head, "n_head"), pos(n_head_kv, "n_head_kv");
  pos(n_ctx, "n_ctx"), pos(image_size, "image_size"), pos(patch_size, "patch_size"), pos(vision_embd, "vision_embd");
  pos(vision_ff, "vision_ff"), pos(vision_layers, "vision_layers"), pos(vision_heads, "vision_heads");
  // Upper bounds far beyond any model ocellus can train, so a typo fails here and not after
  // gigabytes were allocated.
  auto at_most = [](int64_t v, int64_t hi, const char* n) { OCELLUS_CHECK(v <= hi, "init: ", n, " = ", v, " is more than ", hi); };
  at_most(n_embd, 65536, "n_embd"), at_most(n_ff, 262144, "n_ff"), at_most(n_layer, 1024, "n_layer"), at_most(n_head, 1024, "n_head");
  at_most(n_ctx, 1 << 20, "n_ctx"), at_most(image_size, 4096, "image_size"), at_most(vision_embd, 65536, "vision_embd");
  at_most(vision_ff, 262144, "vision_ff"), at_most(vision_layers, 1024, "vision_layers"), at_most(connector_blocks, 64, "connector_blocks");
  OCELLUS_CHECK(n_embd % n_head == 0 && n_head % n_head_kv == 0, "init: n_embd must divide into n_head heads, and n_head into n_head_kv groups");
  const lm::Family& f = lm::family_by_arch(family, "init");  // throws naming the known ones
  OCELLUS_CHECK(f.trainable, "init: the ", family, " family cannot be trained yet");
  OCELLUS_CHECK((n_embd / n_head) % 2 == 0, "init: the head size must be even (rotary pairs)");
  OCELLUS_CHECK(vision_embd % vision_heads == 0, "init: vision_embd must divide into vision_heads heads");
  OCELLUS_CHECK(image_size % patch_size == 0, "init: image_size must be a multiple of patch_size");
  const std::vector<std::string> types = connect::connector_types();
  OCELLUS_CHECK(std::find(types.begin(), types.end(), connector) != types.end(), "init: connector '", connector,
                "' is not a connector type (", join(types), ")");
  pos(connector_blocks, "connector_blocks"), pos(connector_queries, "connector_queries");
  OCELLUS_CHECK(feature_layer >= -vision_layers && feature_layer <= vision_layers, "init: feature_layer ", feature_layer,
                " outside [-", vision_layers, ", ", vision_layers, "] for a tower of ", vision_layers, " blocks");
  pos(merge, "merge");
  OCELLUS_CHECK((image_size / patch_size) % merge == 0, "init: merge ", merge, " does not divide the ", image_size / patch_size,
                "x", image_size / patch_size, " patch grid");
  OCELLUS_CHECK(chat_template == "chatml" || chat_template == "vicuna", "init: chat_template must be chatml or vicuna, not '",
                chat_template, "'");
}

namespace {

// The folder is written under a temporary name beside `dir` and renamed to it at the end: a
// failure (a bad --from, a full disk) leaves nothing behind.
struct PartialFolder {
  std::string path;
  explicit PartialFolder(const std::string& dir) : path(dir + ".partial-" + std::to_string(::getpid())) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~PartialFolder() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
  void commit(const std::string& dir) {
    std::error_code ec;
    std::filesystem::remove(dir, ec);  // an empty folder of that name (a non-empty one was refused)
    std::filesystem::rename(path, dir);
    path.clear();
  }
};

// The machine's memory in bytes (0 when unknown).
uint64_t physical_memory() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : 0;
}

}  // namespace

int64_t init_llava(const InitSpec& s, const text::Tokenizer& tok, const std::string& out_arg) {
  s.validate();
  std::string out_dir = out_arg;  // "dir/" is "dir": the temporary folder goes beside it, not inside
  while (out_dir.size() > 1 && out_dir.back() == '/') out_dir.pop_back();
  OCELLUS_CHECK(!std::filesystem::exists(out_dir) || (std::filesystem::is_directory(out_dir) && std::filesystem::is_empty(out_dir)),
                "init: ", out_dir, " already exists and is not an empty folder (choose another -o, or remove it)");
  // The text model's config as transformers would read it (the family's defaults fill the rest).
  const int64_t V = tok.n_vocab(), d = s.n_embd;
  const lm::Family& fam = lm::family_by_arch(s.family, "init");
  nlohmann::json text = {{"model_type", fam.hf_model_types.front()}, {"hidden_size", d}, {"intermediate_size", s.n_ff},
                         {"num_hidden_layers", s.n_layer}, {"num_attention_heads", s.n_head}, {"num_key_value_heads", s.n_head_kv},
                         {"vocab_size", V}, {"max_position_embeddings", s.n_ctx},
                         {fam.norm == lm::NormKind::Rms ? "rms_norm_eps" : "layer_norm_eps", 1e-5}, {"rope_theta", s.rope_theta},
                         {"tie_word_embeddings", s.tied}, {"hidden_act", lm::hf_act_name(fam.act)},
                         {"bos_token_id", tok.bos()}, {"eos_token_id", tok.eos()}};
  if (s.qkv_bias) text["use_qkv_bias"] = true, text["attention_bias"] = true;
  nlohmann::json cfg_json = {{"model_type", "llava"}, {"text_config", text},
                             {"vision_config", {{"model_type", "siglip_vision_model"}, {"hidden_size", s.vision_embd},
                                                {"intermediate_size", s.vision_ff}, {"num_hidden_layers", s.vision_layers},
                                                {"num_attention_heads", s.vision_heads}, {"image_size", s.image_size},
                                                {"patch_size", s.patch_size}, {"layer_norm_eps", 1e-6},
                                                {"hidden_act", "gelu_pytorch_tanh"}}}};
  const io::HfConfig hc = io::parse_hf_config(cfg_json.dump(), "init");
  // Every tensor is made by the loaders that read the model (the names and shapes written once,
  // there): a first pass only plans them — name, shape, fill — so the sizes are checked before
  // any memory is taken; the second makes them, drawing the random values in the same order.
  struct Planned {
    std::string name;
    Shape shape;
    float fill;  // < 0: normal(0, 0.02)
  };
  std::vector<Planned> plan;
  int64_t count = 0;
  std::vector<std::pair<std::string, Tensor>> t;
  std::mt19937_64 rng(s.seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  bool making = false;
  std::string prefix;  // where the part being made lives in the LLaVA checkpoint
  auto make = [&](const std::string& name, const Shape& shape, bool required) -> Tensor {
    // Optional tensors a file of this kind has: the biases of the tower and the connector, and
    // those of the text family (s.family's; see lm::Family::has_optional).
    if (!required && !name.empty() && prefix == "language_model.") {  // the text model's optional tensors
      if (!fam.has_optional(fam.hf_names(), name, hc.text->qkv_bias, s.tied)) return Tensor();
    } else if (!required && name.empty()) {
      return Tensor();
    }
    // As transformers initializes: biases 0, norm weights (the other vectors) 1, the rest normal(0, 0.02).
    const float fill = name.ends_with(".bias") ? 0.0f : shape.ndim == 1 ? 1.0f : -1.0f;
    if (!making) {
      plan.push_back({prefix + name, shape, fill}), count += shape.numel();
      Shape one = shape;  // a stand-in of the same rank
      for (int i = 0; i < one.ndim; ++i) one[i] = 1;
      return Tensor::zeros(one);
    }
    Tensor x = Tensor::empty(shape);
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = fill < 0 ? normal(rng) : fill;
    t.push_back({prefix + name, x});
    return x;
  };
  nn::Maker<nn::Infer> mk;
  mk.tensor = make;
  mk.matrix = [&](const std::string& name, const Shape& shape) { return ops::PreparedWeight(make(name, shape, true)); };
  mk.has = [](const std::string&) { return false; };  // nothing is there yet: the separate q / k / v form
  for (int pass = 0; pass < 2; ++pass, making = true) {
    lm::LmConfig lc;
    prefix = "language_model.";
    lm::load_hf_weights(*hc.text, mk, &lc);
    prefix = "";
    vision::load_vit(mk, vision::vit_config_from_hf(*hc.vision), vision::hf_vit_names("vision_tower.vision_model."));
    connect::ConnectorConfig cc;
    cc.d_in = s.vision_embd, cc.d_out = d, cc.merge = s.merge, cc.n_blocks = s.connector_blocks, cc.n_query = s.connector_queries;
    connect::load_connector(s.connector, cc, mk, connect::Layout::HfLlava, "init");
    if (making) break;
    const uint64_t bytes = uint64_t(count) * sizeof(float), mem = physical_memory();
    OCELLUS_CHECK(mem == 0 || bytes <= mem / 2, "init: these sizes make ", count, " parameters (", bytes >> 20,
                  " MiB of f32 weights), more than half of this machine's memory (", mem >> 20, " MiB)");
  }
  PartialFolder folder(out_dir);
  const std::string& dir = folder.path;
  if (!s.from.empty()) {  // the text model and tower of an existing folder, the connector new
    const io::SafetensorsModel src = io::SafetensorsModel::open(s.from);
    int64_t taken = 0;
    for (auto& [name, x] : t) {
      if (name.rfind("multi_modal_projector.", 0) == 0) continue;
      OCELLUS_CHECK(src.has(name), "init: ", s.from, " has no '", name, "' (a different model shape?)");
      const Tensor y = src.tensor(name);
      OCELLUS_CHECK(y.shape() == x.shape(), "init: ", s.from, ": '", name, "' has shape ", y.shape().str(), ", the new model ",
                    x.shape().str());
      x = y.to(DType::F32).contiguous().clone(), ++taken;
    }
    OCELLUS_CHECK(taken > 0, "init: nothing taken from ", s.from);
  }
  io::write_safetensors(dir + "/model.safetensors", t);
  nlohmann::json c;
  c["model_type"] = "llava";
  c["architectures"] = {"LlavaForConditionalGeneration"};
  c["text_config"] = cfg_json["text_config"];
  c["vision_config"] = cfg_json["vision_config"];
  c["vision_feature_layer"] = s.feature_layer;
  c["vision_feature_select_strategy"] = "full";
  c["projector_hidden_act"] = "gelu";
  c["mm_projector_type"] = s.connector;
  c["spatial_merge_size"] = s.merge;
  c["image_token_index"] = -1;
  io::write_text_file_atomically(dir + "/config.json", c.dump(2) + "\n");
  const nlohmann::json pp = {{"image_processor_type", "SiglipImageProcessor"}, {"do_resize", true}, {"do_rescale", true},
                             {"do_normalize", true}, {"image_mean", {0.5, 0.5, 0.5}}, {"image_std", {0.5, 0.5, 0.5}},
                             {"size", {{"height", s.image_size}, {"width", s.image_size}}}};
  io::write_text_file_atomically(dir + "/preprocessor_config.json", pp.dump(2) + "\n");
  tok.save_hf_json(dir + "/tokenizer.json");
  // The chat template the model will be trained with, as Jinja in tokenizer_config.json, so
  // `ocellus run` / `train` pick it up from the folder.
  const std::string tc_path = dir + "/tokenizer_config.json";
  nlohmann::json tc = io::is_file(tc_path) ? io::read_json_file(tc_path, "init") : nlohmann::json::object();
  if (s.chat_template == "chatml")
    tc["chat_template"] = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
  else
    tc["chat_template"] = "{% for message in messages %}{% if message['role'] == 'user' %}{{ 'USER: ' + message['content'] + ' ' }}"
                          "{% else %}{{ 'ASSISTANT: ' + message['content'] + eos_token }}{% endif %}{% endfor %}"
                          "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";
  io::write_text_file_atomically(tc_path, tc.dump(1) + "\n");
  folder.commit(out_dir);
  return count;
}

}  // namespace ocellus::model
