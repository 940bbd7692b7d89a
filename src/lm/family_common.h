#pragma once
// Weight loading shared by the family files. A family's weights are read through a Source (a
// GGUF file or a Hugging Face folder) under the names of a Names table (GGUF's, or the family's
// Hugging Face names), so each family writes its layout once for both formats.
#include <functional>
#include <string>

#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/lm/lm.h"

namespace ocellus::lm::detail {

using Source = io::TensorSource;
using io::gguf_source;

// Tensor names; patterns with %d take the block index; empty = the format has no such tensor.
struct Names {
  std::string tok_embd, out_norm, out_norm_b, output, output_b;
  std::string attn_norm, attn_norm_b, q, q_b, k, k_b, v, v_b, qkv, qkv_b, o, o_b;
  std::string ffn_norm, ffn_norm_b, gate, up, up_b, down, down_b;
};
Names gguf_names();
// Llama-style Hugging Face names (llama, qwen2, stablelm: model.layers.N.self_attn.q_proj...).
Names hf_llama_names();
// Phi-2's Hugging Face names (dense, fc1 / fc2, final_layernorm).
Names hf_phi2_names();

// What a family's blocks hold.
struct Layout {
  bool norm_bias = false;  // LayerNorm with bias (phi2, stablelm)
  bool gated = true;       // gate / up / down (else up / down with biases)
  bool separate_ffn_norm = true;
};

// The rows of each of n_head heads of a Q or K matrix [n_head * hd, k] (or bias as [n, 1])
// reordered between llama.cpp's adjacent pairs (its converter's permutation) and Hugging
// Face's rotate-half halves. f16 / bf16 stay so; other dtypes come back f32.
Tensor head_rows_to_rotate_half(const Tensor& w, int64_t n_head);
Tensor head_rows_to_adjacent(const Tensor& w, int64_t n_head);

// Every weight of a model under the names of `n` (an empty name for a tensor the model has is
// an error): fused q/k/v split when split_qkv (else kept as the model holds it), Q/K rows (and
// biases) reordered as `qk` says. The exporters write what fn receives.
enum class QkRows { Keep, ToRotateHalf, ToAdjacent };
void for_each_named_weight(const LmConfig& c, const LmWeights& w, const Names& n, bool split_qkv, QkRows qk,
                           const std::function<void(const std::string&, const Tensor&)>& fn);

// Reads the weights (shapes checked against the config); 1-D tensors become f32. The maker's
// form serves training too (f32 parameters under the same names).
LmWeights load_weights(const Source& s, const Names& n, const LmConfig& c, const Layout& l);
template <class F>
DecoderWeights<F> load_weights(const nn::Maker<F>& mk, const Names& n, const LmConfig& c, const Layout& l);

// The Hugging Face config's common part.
LmConfig hf_common_config(const io::HfTextConfig& t, const std::string& arch);
// The GGUF file's norm epsilon: the RMS or LayerNorm key, as c.norm says.
float gguf_norm_eps(const io::GgufFile& f, const LmConfig& c, float fallback);
// How a family reads a Hugging Face text model: its config, tensor names and block layout.
struct HfPlan {
  LmConfig c;
  Names n;
  Layout l;
};
HfPlan llama_hf_plan(const io::HfTextConfig& t);
HfPlan qwen2_hf_plan(const io::HfTextConfig& t);
HfPlan phi2_hf_plan(const io::HfTextConfig& t);
HfPlan stablelm_hf_plan(const io::HfTextConfig& t);
HfPlan hf_plan(const io::HfTextConfig& t, const std::string& path);  // by model_type

// Validates the config, loads the weights, makes the model.
std::unique_ptr<LanguageModel> make_model(LmConfig c, const Source& s, const Names& n, const Layout& l);

}  // namespace ocellus::lm::detail
