#pragma once
// Weight loading shared by the loaders and exporters. A family's weights are read through a
// Source (a GGUF file or a Hugging Face folder) under the names of a Names table (GGUF's, or the
// family's Hugging Face names, lm/family.h), so each family states its layout once for both.
#include <functional>
#include <string>

#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/lm/family.h"
#include "ocellus/lm/lm.h"

namespace ocellus::lm::detail {

using Source = io::TensorSource;
using io::gguf_source;

// Llama-style Hugging Face names (model.layers.N.self_attn.q_proj...): defined with the llama
// family (lm/llama.cpp), shared by qwen2 and stablelm.
Names hf_llama_names();

// Every weight of a model under the names of `n` (an empty name for a tensor the model has is
// an error): fused q/k/v split where n has no name for them fused (else kept as the model holds
// them), Q/K rows (and biases) in the order of `rows`, reordered where the model's differ (full
// rotary only: a partial one has no layout in the other order). The exporters write what fn receives.
void for_each_named_weight(const LmConfig& c, const LmWeights& w, const Names& n, ops::RopeMode rows,
                           const std::function<void(const std::string&, const Tensor&)>& fn);

// Reads the weights through a maker (shapes checked against the config): a file's (nn::file_maker;
// 1-D tensors become f32) or training's (f32 parameters under the same names).
template <class F>
DecoderWeights<F> load_weights(const nn::Maker<F>& mk, const Names& n, const LmConfig& c, const Layout& l);

// Validates the config, loads the weights, makes the model.
std::unique_ptr<LanguageModel> make_model(LmConfig c, const Source& s, const Names& n, const Layout& l);

}  // namespace ocellus::lm::detail
