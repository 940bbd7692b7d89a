#pragma once
// A new VLM from nothing (the from-scratch recipe): a Hugging Face LLaVA-style folder with a
// text model of any family, a SigLIP-style tower (patch bias, GELU-tanh, no class token) and any
// connector, all made by the loaders that read them (names and shapes written once) and randomly
// initialized as transformers initializes them (normal std 0.02 for
// matrices and embeddings, ones for norms, zeros for biases), and the given tokenizer. Every
// ocellus verb (train, run, cache, eval) then reads the folder.
#include <cstdint>
#include <string>

#include "ocellus/text/tokenizer.h"

namespace ocellus::model {

struct InitSpec {
  // Text model: a family's general.architecture (lm/family.h: llama, qwen2, phi2, stablelm);
  // q/k/v biases when qkv_bias (qwen2 has them always).
  std::string family = "llama";
  bool qkv_bias = false;
  int64_t n_embd = 256, n_ff = 688, n_layer = 4, n_head = 4, n_head_kv = 2, n_ctx = 1024;
  double rope_theta = 10000.0;
  bool tied = true;
  // Tower.
  int64_t image_size = 56, patch_size = 7, vision_embd = 192, vision_ff = 512, vision_layers = 4, vision_heads = 3;
  // Connector: any type (connect::connector_types); attn_blocks (Llama 3-V) has connector_blocks
  // self-attention blocks at the tower's width (64-wide heads), resampler connector_queries queries.
  std::string connector = "mlp2x_gelu";
  int64_t connector_blocks = 2, connector_queries = 16;
  // LLaVA's vision_feature_layer: the tower's hidden state the connector reads (-1: the last
  // block's output, -2: the one before, ...; 0: after the post-LayerNorm).
  int64_t feature_layer = -1;
  // Patches merged per side before the connector (Qwen2-VL's spatial_merge_size): each
  // merge x merge block of patch features, concatenated, is one image token. 1: none.
  int64_t merge = 1;
  uint64_t seed = 1;
  // A LLaVA folder whose text model and tower are taken over (tensors of the same name and shape;
  // the connector stays new): ablations that swap only the connector.
  std::string from;
  std::string chat_template = "chatml";  // written into tokenizer_config.json: chatml or vicuna
  void validate() const;  // throws naming the field
};

// Writes config.json, model.safetensors, tokenizer.json (+ tokenizer_config.json) and
// preprocessor_config.json into dir (created). Returns the parameter count.
int64_t init_llava(const InitSpec& s, const text::Tokenizer& tok, const std::string& dir);

}  // namespace ocellus::model
