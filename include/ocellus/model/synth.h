#pragma once
// Random-weight models of named real shapes (TinyLlama-1.1B, Qwen2-0.5B, Phi-2, StableLM-2-1.6B,
// CLIP-ViT-L/14-336, SigLIP-so400m/14-384, ...) written as GGUF text models or mmproj files in
// llama.cpp's layout, with a synthetic vocabulary of the right size: benchmarks and tests get
// realistic sizes without downloads. Values are deterministic in the seed.
#include <cstdint>
#include <string>
#include <vector>

#include "ocellus/core/dtype.h"

namespace ocellus::model {

struct SynthShape {
  std::string name;         // "tinyllama-1.1b"
  std::string description;  // what it mirrors
  bool vision = false;      // mmproj (architecture "clip") instead of a text model
  // Text model.
  std::string arch;         // a text family's general.architecture (lm/family.h)
  int64_t n_embd = 0, n_ff = 0, n_layer = 0, n_head = 0, n_head_kv = 0, n_vocab = 0, n_ctx = 0;
  int64_t n_rot = 0;        // rotary dimensions per head
  double rope_theta = 10000, norm_eps = 1e-5;
  bool tied = false, qkv_bias = false;
  // Vision tower + LLaVA MLP projector.
  int64_t image_size = 0, patch_size = 0, proj_dim = 0;
  bool siglip = false;      // no class token, patch bias, post-LN, GELU; CLIP: class token, pre-LN
};

const std::vector<SynthShape>& synth_shapes();
const SynthShape& synth_shape(const std::string& name);  // throws listing the known names

struct SynthOptions {
  DType dtype = DType::F16;  // of the 2-D weight matrices (norms and biases stay f32)
  int64_t layers = 0;        // 0: the shape's own layer count
  uint64_t seed = 1;
};

// Writes the model; returns the bytes of tensor data written.
uint64_t write_synth_model(const SynthShape& shape, const SynthOptions& opt, const std::string& path);

}  // namespace ocellus::model
