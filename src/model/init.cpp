#include "ocellus/io/json.h"
#include "ocellus/model/init.h"

#include <unistd.h>

#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/io/file.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/lm/family.h"
#include "ocellus/core/tensor.h"

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
  OCELLUS_CHECK(connector == "mlp2x_gelu" || connector == "attn_blocks", "init: connector must be mlp2x_gelu or attn_blocks, not '",
                connector, "'");
  pos(connector_blocks, "connector_blocks");
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
  std::mt19937_64 rng(s.seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  // First every tensor's name, shape and fill, and the sizes checked; only then the memory.
  struct Planned {
    std::string name;
    Shape shape;
    float fill;  // < 0: normal(0, 0.02)
  };
  std::vector<Planned> plan;
  int64_t count = 0;
  auto add = [&](const std::string& name, const Shape& shape, float fill) {
    plan.push_back({name, shape, fill});
    count += shape.numel();
  };
  const int64_t V = tok.n_vocab(), d = s.n_embd, hd = d / s.n_head;
  // The text model: the family's Hugging Face names and layout, under LLaVA's prefix.
  const lm::Family& fam = lm::family_by_arch(s.family);
  lm::LmConfig lc;  // the sizes weight_shapes reads
  lc.n_embd = d, lc.n_ff = s.n_ff, lc.n_layer = s.n_layer, lc.n_head = s.n_head, lc.n_head_kv = s.n_head_kv;
  lc.head_dim = hd, lc.n_vocab = V;
  for (const lm::WeightShape& w : lm::weight_shapes(fam, lc, fam.hf_names(), false, s.qkv_bias, s.tied))
    add("language_model." + w.name, w.shape,
        w.role == lm::WeightRole::Norm ? 1.0f : w.role == lm::WeightRole::Bias ? 0.0f : -1.0f);
  const int64_t dv = s.vision_embd, np = (s.image_size / s.patch_size) * (s.image_size / s.patch_size);
  const std::string v = "vision_tower.vision_model.";
  add(v + "embeddings.patch_embedding.weight", {dv, 3, s.patch_size, s.patch_size}, -1);
  add(v + "embeddings.patch_embedding.bias", {dv}, 0);
  add(v + "embeddings.position_embedding.weight", {np, dv}, -1);
  for (int64_t l = 0; l < s.vision_layers; ++l) {
    const std::string p = v + "encoder.layers." + std::to_string(l) + ".";
    for (const char* ln : {"layer_norm1", "layer_norm2"}) add(p + ln + ".weight", {dv}, 1), add(p + ln + ".bias", {dv}, 0);
    for (const char* m : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"})
      add(p + m + ".weight", {dv, dv}, -1), add(p + m + ".bias", {dv}, 0);
    add(p + "mlp.fc1.weight", {s.vision_ff, dv}, -1), add(p + "mlp.fc1.bias", {s.vision_ff}, 0);
    add(p + "mlp.fc2.weight", {dv, s.vision_ff}, -1), add(p + "mlp.fc2.bias", {dv}, 0);
  }
  add(v + "post_layernorm.weight", {dv}, 1), add(v + "post_layernorm.bias", {dv}, 0);
  const int64_t dc = dv * s.merge * s.merge;  // the connector's input: merge² patch features side by side
  if (s.connector == "attn_blocks") {  // Llama 3-V: self-attention blocks at the tower's width, then a projection
    for (int64_t i = 0; i < s.connector_blocks; ++i) {
      const std::string p = "multi_modal_projector.blocks." + std::to_string(i) + ".";
      add(p + "ln1.weight", {dc}, 1), add(p + "ln1.bias", {dc}, 0), add(p + "ln2.weight", {dc}, 1), add(p + "ln2.bias", {dc}, 0);
      for (const char* m : {"attn.q", "attn.k", "attn.v", "attn.out"}) add(p + m + ".weight", {dc, dc}, -1), add(p + m + ".bias", {dc}, 0);
      add(p + "ffn_up.weight", {4 * dc, dc}, -1), add(p + "ffn_up.bias", {4 * dc}, 0);
      add(p + "ffn_down.weight", {dc, 4 * dc}, -1), add(p + "ffn_down.bias", {dc}, 0);
    }
    add("multi_modal_projector.proj.weight", {d, dc}, -1), add("multi_modal_projector.proj.bias", {d}, 0);
  } else {
    add("multi_modal_projector.linear_1.weight", {d, dc}, -1), add("multi_modal_projector.linear_1.bias", {d}, 0);
    add("multi_modal_projector.linear_2.weight", {d, d}, -1), add("multi_modal_projector.linear_2.bias", {d}, 0);
  }
  const uint64_t bytes = uint64_t(count) * sizeof(float), mem = physical_memory();
  OCELLUS_CHECK(mem == 0 || bytes <= mem / 2, "init: these sizes make ", count, " parameters (", bytes >> 20,
                " MiB of f32 weights), more than half of this machine's memory (", mem >> 20, " MiB)");
  std::vector<std::pair<std::string, Tensor>> t;
  for (const Planned& p : plan) {
    Tensor x = Tensor::empty(p.shape);
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = p.fill < 0 ? normal(rng) : p.fill;
    t.push_back({p.name, x});
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
  c["text_config"] = {{"model_type", fam.hf_model_types.front()}, {"hidden_size", d}, {"intermediate_size", s.n_ff},
                      {"num_hidden_layers", s.n_layer}, {"num_attention_heads", s.n_head}, {"num_key_value_heads", s.n_head_kv},
                      {"vocab_size", V}, {"max_position_embeddings", s.n_ctx},
                      {fam.norm == lm::NormKind::Rms ? "rms_norm_eps" : "layer_norm_eps", 1e-5}, {"rope_theta", s.rope_theta},
                      {"partial_rotary_factor", 1.0}, {"tie_word_embeddings", s.tied},
                      {"hidden_act", lm::hf_act_name(fam.act)}, {"bos_token_id", tok.bos()}, {"eos_token_id", tok.eos()}};
  if (s.qkv_bias) c["text_config"]["use_qkv_bias"] = true, c["text_config"]["attention_bias"] = true;
  c["vision_config"] = {{"model_type", "siglip_vision_model"}, {"hidden_size", dv}, {"intermediate_size", s.vision_ff},
                        {"num_hidden_layers", s.vision_layers}, {"num_attention_heads", s.vision_heads},
                        {"image_size", s.image_size}, {"patch_size", s.patch_size}, {"layer_norm_eps", 1e-6},
                        {"hidden_act", "gelu_pytorch_tanh"}};
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
