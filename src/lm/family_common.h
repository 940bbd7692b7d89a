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

// Reads the weights (shapes checked against the config); 1-D tensors become f32.
LmWeights load_weights(const Source& s, const Names& n, const LmConfig& c, const Layout& l);

// The Hugging Face config's common part.
LmConfig hf_common_config(const io::HfTextConfig& t, const std::string& arch);
// The GGUF file's norm epsilon: the RMS or LayerNorm key, as c.norm says.
float gguf_norm_eps(const io::GgufFile& f, const LmConfig& c, float fallback);
// Validates the config, loads the weights, makes the model.
std::unique_ptr<LanguageModel> make_model(LmConfig c, const Source& s, const Names& n, const Layout& l);

}  // namespace ocellus::lm::detail
