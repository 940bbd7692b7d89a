#pragma once
// The hyperparameters of a decoder language model: sizes and the knobs the families differ by.
#include <cstdint>
#include <string>

#include "ocellus/ops/elementwise.h"
#include "ocellus/ops/rope.h"

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

}  // namespace ocellus::lm
