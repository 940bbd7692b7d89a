// The text-model families: one table of their descriptors (each defined in its family's file),
// the lookups, and the loaders and configs every family shares, driven by the descriptor.
#include "ocellus/core/error.h"
#include "ocellus/io/file.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/tensor_source.h"
#include "family_common.h"

namespace ocellus::lm {

namespace key = io::gguf::key;

// ---- the table: a new family is its file, its declaration here and its entry in the list ----
const Family& llama_family();
const Family& qwen2_family();
const Family& phi2_family();
const Family& stablelm_family();

const std::vector<const Family*>& families() {
  static const std::vector<const Family*> all = {&llama_family(), &qwen2_family(), &phi2_family(), &stablelm_family()};
  return all;
}

// --------------------------------------------------------------------------------------------

namespace {
std::string known(bool hf) {
  std::string s;
  for (const Family* f : families())
    for (const std::string& n : hf ? f->hf_model_types : std::vector<std::string>{f->gguf_arch}) s += (s.empty() ? "" : ", ") + n;
  return s;
}
}  // namespace

const Family* find_family_arch(const std::string& arch) {
  for (const Family* f : families())
    if (f->gguf_arch == arch) return f;
  return nullptr;
}

const Family& family_by_arch(const std::string& arch, const std::string& what) {
  if (const Family* f = find_family_arch(arch)) return *f;
  fail("lm: ", what.empty() ? "" : what + ": ", "architecture '", arch, "' is not a text model ocellus runs (", known(false), ")");
}

const Family* find_family_hf(const std::string& model_type) {
  for (const Family* f : families())
    for (const std::string& t : f->hf_model_types)
      if (t == model_type) return f;
  return nullptr;
}

const Family& family_by_hf(const std::string& model_type, const std::string& what) {
  if (const Family* f = find_family_hf(model_type)) return *f;
  fail("lm: ", what, ": model_type '", model_type, "' is not a text model ocellus runs (", known(true), ")");
}

std::vector<std::string> known_architectures() {
  std::vector<std::string> r;
  for (const Family* f : families()) r.push_back(f->gguf_arch);
  return r;
}

namespace {
void set_block(const Family& f, LmConfig& c) {
  c.norm = f.norm;
  c.act = f.act;
  c.gated_ffn = f.layout.gated;
  c.parallel_block = f.parallel_block;
}
}  // namespace

// A GGUF text model's sizes (keys under its general.architecture) and the fields that hold them,
// read and written in this order.
constexpr std::pair<const char*, int64_t LmConfig::*> kGgufSizes[] = {
    {key::kContextLength, &LmConfig::n_ctx}, {key::kEmbeddingLength, &LmConfig::n_embd}, {key::kBlockCount, &LmConfig::n_layer},
    {key::kFeedForwardLength, &LmConfig::n_ff}, {key::kHeadCount, &LmConfig::n_head}, {key::kHeadCountKv, &LmConfig::n_head_kv}};

LmConfig Family::gguf_config(const io::GgufFile& f) const {
  LmConfig c;
  c.arch = f.get_string(key::kArchitecture);
  auto k = [&](const char* suffix) { return io::gguf::arch_key(c.arch, suffix); };
  for (const auto& [suffix, field] : kGgufSizes) {
    // Optional: the context (then 2048) and the key/value heads (then as many as the heads).
    const int64_t v = field == &LmConfig::n_ctx       ? f.get_int(k(suffix), 2048)
                      : field == &LmConfig::n_head_kv ? f.get_int(k(suffix), c.n_head)
                                                      : f.get_int(k(suffix));
    // Each size must be one a model can have, before anything is allocated from it.
    OCELLUS_CHECK(v >= 1 && v <= (int64_t(1) << 24), "lm: ", f.path(), ": ", k(suffix), " = ", v, " (must be from 1 to 2^24)");
    c.*field = v;
  }
  OCELLUS_CHECK(c.n_embd % c.n_head == 0 && c.n_head % c.n_head_kv == 0, "lm: ", f.path(), ": ", c.n_head, " heads (",
                c.n_head_kv, " key/value heads) do not divide the embedding width ", c.n_embd);
  c.head_dim = c.n_embd / c.n_head;
  c.n_vocab = f.tensor_info(io::gguf::tensor::kTokenEmbd).shape[0];
  c.rope.n_rot = f.get_int(k(key::kRopeDimensionCount), c.head_dim);
  c.rope.theta = float(f.get_float(k(key::kRopeFreqBase), 10000.0));
  c.rope.angles = ops::RopeAngles::Ggml;  // GGUF models: computed as llama.cpp computes them
  c.rope.mode = gguf_rope;
  c.f32_ggml_order = true;
  set_block(*this, c);
  c.norm_eps = float(f.get_float(k(norm == NormKind::Rms ? key::kRmsEps : key::kLayerNormEps), gguf_norm_eps));
  c.gelu_f16_table = gguf_gelu_f16_table;
  c.prescale_q = gguf_prescale_q;
  return c;
}

void set_gguf_config(io::GgufWriter& g, const LmConfig& c) {
  auto k = [&](const char* suffix) { return io::gguf::arch_key(c.arch, suffix); };
  for (const auto& [suffix, field] : kGgufSizes) g.set(k(suffix), io::GgufValue::u32(uint32_t(c.*field)));
  g.set(k(key::kRopeFreqBase), io::GgufValue::f32(c.rope.theta));
  g.set(k(key::kRopeDimensionCount), io::GgufValue::u32(uint32_t(c.rope.n_rot)));
  g.set(k(c.norm == NormKind::Rms ? key::kRmsEps : key::kLayerNormEps), io::GgufValue::f32(c.norm_eps));
  g.set(k(key::kVocabSize), io::GgufValue::u32(uint32_t(c.n_vocab)));
}

LmConfig Family::hf_config(const io::HfTextConfig& t) const {
  LmConfig c;
  c.arch = gguf_arch;
  c.n_embd = t.hidden_size, c.n_ff = t.intermediate_size, c.n_layer = t.num_hidden_layers;
  c.n_head = t.num_attention_heads, c.n_head_kv = t.num_key_value_heads, c.head_dim = t.head_dim();
  c.n_vocab = t.vocab_size, c.n_ctx = t.max_position_embeddings;
  c.rope.n_rot = int64_t(double(c.head_dim) * t.partial_rotary_factor);
  c.rope.theta = float(t.rope_theta);
  c.rope.mode = ops::RopeMode::RotateHalf;  // HF checkpoints keep q/k rows in rotate-half order
  c.rope.angles = ops::RopeAngles::Exact;
  c.norm_eps = float(t.norm_eps);
  set_block(*this, c);
  return c;
}

template <class F>
DecoderWeights<F> Family::gguf_weights(const LmConfig& c, const nn::Maker<F>& mk) const {
  return detail::load_weights(mk, detail::gguf_names(), c, layout);
}
template LmWeights Family::gguf_weights(const LmConfig&, const nn::Maker<nn::Infer>&) const;
template DecoderWeights<nn::Train> Family::gguf_weights(const LmConfig&, const nn::Maker<nn::Train>&) const;

bool Family::has_optional(const detail::Names& n, const std::string& name, bool qkv_bias, bool tied) const {
  if (name == n.output) return !tied;
  auto is = [&](const std::string& pattern) {  // the block's tensor of that pattern, any block
    const size_t at = pattern.find("%d");
    return at != std::string::npos && name.ends_with(pattern.substr(at + 2));
  };
  if (is(n.q_b) || is(n.k_b) || is(n.v_b) || is(n.qkv_b)) return qkv_bias;
  return name.ends_with(".bias") && dense_biases;
}

const char* hf_act_name(ops::Activation a) {
  return a == ops::Activation::Silu ? "silu" : a == ops::Activation::GeluTanh ? "gelu_new" : "gelu";
}

// ---- loading ---------------------------------------------------------------------------------

std::unique_ptr<LanguageModel> load_gguf(const io::GgufFile& f) {
  const Family& fam = family_by_arch(f.get_string(io::gguf::key::kArchitecture), f.path());
  auto model = detail::make_model(fam.gguf_config(f), gguf_source(f), detail::gguf_names(), fam.layout);
  f.mapped_file()->drop_resident();  // the matrices are copies now: the file resident once, not twice
  return model;
}

std::unique_ptr<LanguageModel> load_gguf(const io::GgufFile& f, const io::TensorSource& over) {
  const Family& fam = family_by_arch(f.get_string(io::gguf::key::kArchitecture), f.path());
  auto model = detail::make_model(fam.gguf_config(f), io::overlay_source(over, gguf_source(f)), detail::gguf_names(), fam.layout);
  f.mapped_file()->drop_resident();
  return model;
}

template <class F>
DecoderWeights<F> load_hf_weights(const io::HfTextConfig& t, const nn::Maker<F>& mk, LmConfig* c) {
  const Family& fam = family_by_hf(t.model_type, "config.json");
  LmConfig lc = fam.hf_config(t);
  lc.validate();
  DecoderWeights<F> w = detail::load_weights(mk, fam.hf_names(), lc, fam.layout);
  *c = std::move(lc);
  return w;
}
template DecoderWeights<nn::Infer> load_hf_weights(const io::HfTextConfig&, const nn::Maker<nn::Infer>&, LmConfig*);
template DecoderWeights<nn::Train> load_hf_weights(const io::HfTextConfig&, const nn::Maker<nn::Train>&, LmConfig*);

io::TensorSource hf_text_source(const io::TensorSource& s) {
  if (s.has("language_model.model.embed_tokens.weight"))  // transformers < 4.52, TinyLLaVA
    return io::renamed_source(s, {{"", "language_model."}});
  if (s.has("model.language_model.embed_tokens.weight"))  // transformers >= 4.52
    return io::renamed_source(s, {{"model.", "model.language_model."}, {"lm_head.", "lm_head."}});
  return s;
}

std::unique_ptr<LanguageModel> load_hf(const std::string& dir) {
  const io::HfConfig cfg = io::read_hf_config(dir);
  if (!cfg.text) fail("lm: ", dir, ": config.json describes no text model");
  const Family& fam = family_by_hf(cfg.text->model_type, cfg.path);
  const io::SafetensorsModel m = io::SafetensorsModel::open(dir);
  // The family's names are plain; a LLaVA checkpoint keeps the text model under a prefix.
  return detail::make_model(fam.hf_config(*cfg.text), hf_text_source(io::safetensors_source(m, dir)), fam.hf_names(), fam.layout);
}

std::unique_ptr<LanguageModel> load_model(const std::string& path) {
  if (io::is_directory(path)) return load_hf(path);
  return load_gguf(io::GgufFile::open(path));
}

}  // namespace ocellus::lm
