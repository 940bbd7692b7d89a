#pragma once
// Decoder language models (the text half of every VLM): one pre-norm transformer decoder with
// the knobs the families in scope differ by, set from one descriptor per family (lm/family.h;
// lm/llama.cpp, qwen2.cpp, phi2.cpp, stablelm.cpp), found by general.architecture or Hugging
// Face model_type. Weights are immutable and shareable; the KV cache is the per-sequence state.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ocellus/core/tensor.h"
#include "ocellus/ops/elementwise.h"
#include "ocellus/ops/matmul.h"
#include "ocellus/ops/rope.h"

namespace ocellus::io {
class GgufFile;
class SafetensorsModel;
struct HfTextConfig;
struct TensorSource;
}

namespace ocellus::text {
class Tokenizer;
}

namespace ocellus::lm {

enum class NormKind { Rms, Layer };

struct LmConfig {
  std::string arch;
  int64_t n_embd = 0, n_ff = 0, n_layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
  int64_t n_vocab = 0, n_ctx = 0;
  ops::RopeParams rope;            // n_rot, theta, layout (llama: adjacent; others: rotate-half)
  NormKind norm = NormKind::Rms;
  float norm_eps = 1e-5f;
  ops::Activation act = ops::Activation::Silu;
  bool gated_ffn = true;           // SwiGLU (gate, up, down) vs up -> act -> down
  bool parallel_block = false;     // phi2: attention and FFN both read the same normed input
  // GELU as llama.cpp's CPU backend computes it for GGUF models: input rounded to f16, the
  // tanh-form GELU of that looked up in an f16 table (0 below -10, identity above 10).
  bool gelu_f16_table = false;
  // llama.cpp's phi2 graph scales Q by 1/sqrt(head_dim) before the attention product (the
  // others scale the scores): with an f16 cache this changes how Q rounds.
  bool prescale_q = false;
  // f32 weight products summed in llama.cpp's order (ops::matmul_ggml_order): with the f16 KV
  // cache's rounding, last-bit differences of another order grow to 3e-4 in the logits.
  bool f32_ggml_order = false;
  void validate() const;           // throws naming the field
};

struct LayerWeights {
  Tensor attn_norm, attn_norm_b, ffn_norm, ffn_norm_b;          // f32 vectors (b may be undefined)
  ops::PreparedWeight wq, wk, wv, wqkv, wo, w_gate, w_up, w_down;  // wqkv when fused
  Tensor bq, bk, bv, bqkv, bo, b_up, b_down;                    // f32 biases (undefined when absent)
};

struct LmWeights {
  Tensor token_embd;               // [n_vocab, n_embd], any dtype
  std::vector<LayerWeights> layers;
  Tensor out_norm, out_norm_b;
  ops::PreparedWeight output;      // [n_vocab, n_embd]: token_embd when tied
  Tensor output_b;
};

// Keys and values of every layer for one sequence: [n_ctx, n_head_kv, head_dim] each.
// type F16 (the default, as llama.cpp's default cache): keys and values are kept at f16
// precision, and attention follows llama.cpp's CPU path over such a cache (queries and
// probabilities rounded to f16 for their products with the cache); F32 keeps full precision.
// (The values are held in f32 storage for now: the precision is f16's, the memory is not yet.)
class KvCache {
 public:
  KvCache(const LmConfig& c, int64_t n_ctx, DType type = DType::F16);
  DType type() const { return type_; }
  int64_t n_past() const { return n_past_; }
  int64_t capacity() const { return n_ctx_; }
  void clear() { n_past_ = 0; }
  // Forget everything from position n on (n <= n_past).
  void truncate(int64_t n);

 private:
  friend class LanguageModel;
  int64_t n_ctx_, n_past_ = 0;
  DType type_;
  std::vector<Tensor> k_, v_;
};

class LanguageModel {
 public:
  LanguageModel(LmConfig config, LmWeights weights) : c_(std::move(config)), w_(std::move(weights)) { c_.validate(); }
  const LmConfig& config() const { return c_; }
  const LmWeights& weights() const { return w_; }

  // Token embeddings [n, n_embd] (the VLM splices image rows into them).
  Tensor embed(const std::vector<int32_t>& ids) const;
  // Runs embeddings x [n, n_embd] at positions cache.n_past() .. +n-1, appends their keys and
  // values to the cache, and returns logits [n, n_vocab] (all_logits) or of the last row [1, n_vocab].
  // More positions than the cache holds is an error naming both numbers; nothing is written then.
  Tensor forward(const Tensor& x, KvCache& cache, bool all_logits) const;
  Tensor forward_ids(const std::vector<int32_t>& ids, KvCache& cache, bool all_logits) const {
    return forward(embed(ids), cache, all_logits);
  }

 private:
  LmConfig c_;
  LmWeights w_;
};

// Reads a GGUF text model: the family from general.architecture (lm::families()).
std::unique_ptr<LanguageModel> load_gguf(const io::GgufFile& f);
// Reads a Hugging Face folder (config.json + safetensors, sharded or not): the family from the
// text config's model_type (a family's hf_model_types; LLaVA checkpoints' text_config too).
std::unique_ptr<LanguageModel> load_hf(const std::string& dir);
// The text model of a checkpoint's tensors: plain names (model.layers.N...), or inside a LLaVA
// checkpoint (language_model.model.layers.N... in transformers < 4.52,
// model.language_model.layers.N... after).
std::unique_ptr<LanguageModel> load_hf(const io::HfTextConfig& t, const io::TensorSource& s);
// The text model's tensors of a checkpoint under plain names (model.layers.N..., lm_head).
io::TensorSource hf_text_source(const io::TensorSource& s);
// A model file or folder: GGUF, or a Hugging Face folder.
std::unique_ptr<LanguageModel> load_model(const std::string& path);
std::vector<std::string> known_architectures();  // every family's general.architecture

// The model as a Hugging Face checkpoint (lm/export_hf.cpp): its tensors under the family's
// names (Q/K rows in rotate-half order; block-quantized weights dequantized to f32) and its
// config.json text; load_hf reads them back as the same model.
std::vector<std::pair<std::string, Tensor>> hf_tensors(const LanguageModel& m);
std::string hf_config_json(const LanguageModel& m);
// The model and its vocabulary as a GGUF file in llama.cpp's layout (lm/export_gguf.cpp).
void write_gguf(const LanguageModel& m, const text::Tokenizer& tok, const std::string& path,
                const std::string& chat_template = "");  // Jinja, as tokenizer.chat_template (empty: none)

}  // namespace ocellus::lm
