#pragma once
// What a text-model family is, in one descriptor per family: its GGUF architecture name, its
// Hugging Face model_type names, the block's norm / activation / FFN / residual layout, its
// tensor names, how llama.cpp's GGUF files of it differ (rope row order, epsilon fallback,
// fused q/k/v, llama.cpp's graph quirks), what synth gives it, whether it trains. Each family's
// file (lm/llama.cpp, qwen2.cpp, phi2.cpp, stablelm.cpp) defines only its descriptor; the table
// in lm/registry.cpp lists them once, and every loader, exporter, synth and init reads them.
// Not here, because its layer sits below lm and needs it before any lm code runs: what a
// config.json means where it omits a key (transformers' defaults per model_type,
// io/hf_config.cpp).
#include <string>
#include <vector>

#include "ocellus/lm/lm.h"
#include "ocellus/text/chat.h"

namespace ocellus::io {
class GgufFile;
class GgufWriter;
struct HfTextConfig;
}

namespace ocellus::lm {

namespace detail {

// Tensor names; patterns with %d take the block index; empty = the format has no such tensor.
struct Names {
  std::string tok_embd, out_norm, out_norm_b, output, output_b;
  std::string attn_norm, attn_norm_b, q, q_b, k, k_b, v, v_b, qkv, qkv_b, o, o_b;
  std::string ffn_norm, ffn_norm_b, gate, up, up_b, down, down_b;
};
// llama.cpp's names (io/gguf_names.h), the same for every family.
Names gguf_names();

// What a family's blocks hold.
struct Layout {
  bool norm_bias = false;  // LayerNorm with bias (phi2, stablelm)
  bool gated = true;       // gate / up / down (else up / down with biases)
  bool separate_ffn_norm = true;
};

}  // namespace detail

struct Family {
  std::string gguf_arch;                    // general.architecture
  std::vector<std::string> hf_model_types;  // config.json model_type; the first is what export writes
  // The block (the rest of LmConfig comes from the file).
  NormKind norm = NormKind::Rms;
  ops::Activation act = ops::Activation::Silu;
  bool parallel_block = false;  // attention and FFN both read the same normed input
  detail::Layout layout;        // layout.gated is LmConfig::gated_ffn
  // Attention output, FFN and output matrices carry biases (q/k/v biases are the checkpoint's
  // choice, read when present).
  bool dense_biases = false;
  // llama.cpp's GGUF files of the family.
  ops::RopeMode gguf_rope = ops::RopeMode::RotateHalf;  // Q/K row order its converter writes
  float gguf_norm_eps = 1e-5f;                          // when the file has no epsilon key
  bool gguf_fused_qkv = false;                          // q, k, v as one attn_qkv matrix
  bool gguf_gelu_f16_table = false, gguf_prescale_q = false;  // see LmConfig: llama.cpp's graph
  // Hugging Face checkpoints: the tensor names (the layout is the same as GGUF's).
  detail::Names (*hf_names)() = nullptr;
  // The vocabulary model::synth writes: "" SentencePiece (as Llama 2's), else byte-level BPE
  // with this tokenizer.ggml.pre.
  std::string synth_vocab_pre;
  bool trainable = true;  // model::TrainableVlm can train it
  // The chat template (text::chat_template_from_name) of a model whose files name none; the
  // second when its vocabulary has <|eot_id|> (Llama 3), when not empty.
  std::string chat_template = "chatml", chat_template_with_eot_id;

  // The model's config from a GGUF file of this family, as llama.cpp computes it.
  LmConfig gguf_config(const io::GgufFile& f) const;
  // From a Hugging Face text config of this family (exact numerics, rotate-half rope).
  LmConfig hf_config(const io::HfTextConfig& t) const;
  // The weights of a GGUF file of this family read through mk, for either context (model::synth
  // lists the tensors its files hold this way; LlamaFusion trains image modules on a GGUF base).
  template <class F>
  DecoderWeights<F> gguf_weights(const LmConfig& c, const nn::Maker<F>& mk) const;
  // Whether its files hold the optional tensor `name` (under the names n) of a model with or
  // without q/k/v biases and tied embeddings: the output matrix unless tied, q/k/v biases as the
  // model has them, the other biases where its dense layers carry them (what synth and init write).
  bool has_optional(const detail::Names& n, const std::string& name, bool qkv_bias, bool tied) const;
};

// Every registered family, in the registry's order.
const std::vector<const Family*>& families();
// By general.architecture; throws naming `what` (the file, when given) and the known ones.
const Family& family_by_arch(const std::string& gguf_arch, const std::string& what = "");
// By general.architecture; nullptr when none has it.
const Family* find_family_arch(const std::string& gguf_arch);
// By Hugging Face model_type (any of a family's names); nullptr when none has it.
const Family* find_family_hf(const std::string& model_type);
// By Hugging Face model_type; throws naming `what` (the file) and the known ones.
const Family& family_by_hf(const std::string& model_type, const std::string& what);

// The chat template of a model file (GGUF) or Hugging Face folder: its own Jinja template when it
// has one ocellus knows, else its family's default. Throws when neither identifies one.
text::ChatTemplate detect_chat_template(const io::GgufFile& f);
text::ChatTemplate detect_chat_template(const std::string& hf_dir, const text::Tokenizer& tok);
// The template a user asked for by name, else the model's own (`model`: a GGUF file or a
// Hugging Face folder, tok its vocabulary).
text::ChatTemplate resolve_chat_template(const std::string& name, const std::string& model, const text::Tokenizer& tok);

// A text model's hyperparameter keys in its GGUF file (what Family::gguf_config reads back).
void set_gguf_config(io::GgufWriter& g, const LmConfig& c);

// A decoder activation's Hugging Face hidden_act name (what the exporters write).
const char* hf_act_name(ops::Activation a);

}  // namespace ocellus::lm
