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
#include "ocellus/lm/config.h"
#include "ocellus/lm/decoder_block.h"
#include "ocellus/ops/elementwise.h"
#include "ocellus/ops/matmul.h"
#include "ocellus/ops/rope.h"

namespace ocellus::io {
class GgufFile;
struct HfTextConfig;
struct TensorSource;
}

namespace ocellus::text {
class Tokenizer;
}

namespace ocellus::lm {

// The weights as inference holds them: matrices prepared (packed, quantized), vectors f32.
using LayerWeights = DecoderLayer<nn::Infer>;
using LmWeights = DecoderWeights<nn::Infer>;

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
  // Forgets every position from n on (a prompt cache keeps the common prefix of the next prompt).
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
  // The final-normed hidden states [n, n_embd] of embeddings x (as forward, without the head):
  // what text embeddings pool.
  Tensor hidden(const Tensor& x, KvCache& cache) const;
  // Rows x [n, n_embd] through other layers of this model's shapes (LlamaFusion's image modules)
  // at positions cache.n_past() .. +n-1, attending to the cache and to each other in both
  // directions (the positions of one image); their keys and values stay in the cache (n_past
  // advances) only when keep. Returns the last layer's rows [n, n_embd], before any final norm.
  Tensor forward_rows(const Tensor& x, KvCache& cache, const std::vector<LayerWeights>& layers, bool keep) const;
  // Several sequences' next rows in one pass (batched decoding: each weight matrix is read once
  // for all of them): x [n, n_embd] holds counts[i] rows of sequence i in order, each at its
  // cache's next positions; returns the logits of each sequence's last row [caches.size(), n_vocab].
  // Every row is computed as forward computes it alone, up to the summation order of the
  // products over n rows.
  Tensor forward_batch(const Tensor& x, const std::vector<KvCache*>& caches, const std::vector<int64_t>& counts) const;

 private:
  struct Segment {  // rows of one sequence within a pass
    KvCache* cache;
    int64_t n;
  };
  // The blocks over the caches: causal (this model's text), or bidirectional among the new rows.
  Tensor run_layers(const Tensor& x, const std::vector<Segment>& seqs, const std::vector<LayerWeights>& layers, bool causal,
                    bool keep) const;

  LmConfig c_;
  LmWeights w_;
};

// Reads a GGUF text model: the family from general.architecture (lm::families()).
std::unique_ptr<LanguageModel> load_gguf(const io::GgufFile& f);
// The same with the tensors `over` holds read from there instead (a model trained from a GGUF
// base and saved as the tensors that changed).
std::unique_ptr<LanguageModel> load_gguf(const io::GgufFile& f, const io::TensorSource& over);
// Reads a Hugging Face folder (config.json + safetensors, sharded or not): the family from the
// text config's model_type (a family's hf_model_types; LLaVA checkpoints' text_config too).
std::unique_ptr<LanguageModel> load_hf(const std::string& dir);
// The text model's tensors of a checkpoint under plain names (model.layers.N..., lm_head): as
// they are, or inside a LLaVA checkpoint (language_model.model.layers.N... in transformers < 4.52,
// model.language_model.layers.N... after).
io::TensorSource hf_text_source(const io::TensorSource& s);
// The text model of a Hugging Face config read through a maker, for either forward context
// (training reads f32 parameters this way): *c receives the family's config. Names are plain
// (model.layers.N...): the maker's source strips a LLaVA prefix (hf_text_source).
template <class F>
DecoderWeights<F> load_hf_weights(const io::HfTextConfig& t, const nn::Maker<F>& mk, LmConfig* c);
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
