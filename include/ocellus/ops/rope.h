#pragma once
// Rotary position embedding on x [n_tok, n_head, head_dim] (f32).
#include <cstdint>
#include <vector>

#include "ocellus/core/tensor.h"

namespace ocellus::ops {

enum class RopeMode {
  Adjacent,    // pairs (2i, 2i+1): llama.cpp's "normal" mode (GGUF llama, Q/K rows permuted)
  RotateHalf,  // pairs (i, i + n_rot/2): GPT-NeoX / Hugging Face; qwen2, phi2, stablelm in GGUF
};

// How the angles are computed. Exact: in double (the most accurate). Ggml: as llama.cpp does,
// in float, pair i's angle made from pair i-1's by one multiplication by theta^(-2/n_rot); an
// f16 KV cache rounds K after the rotation, so matching that engine needs its angles too.
enum class RopeAngles { Exact, Ggml };

struct RopeParams {
  int64_t n_rot = 0;      // rotated dims from the start of each head (partial rotary if < head_dim)
  float theta = 10000.0f; // base
  float freq_scale = 1.0f;  // linear position scaling (1 = none)
  RopeMode mode = RopeMode::Adjacent;
  RopeAngles angles = RopeAngles::Exact;
};

// Rotates pair i of each head by angle pos * freq_scale * theta^(-2i / n_rot).
Tensor rope(const Tensor& x, const std::vector<int32_t>& pos, const RopeParams& p);
// The rotation is orthogonal: dx += rotation of dy by the negated angles.
void rope_backward(const Tensor& dy, const std::vector<int32_t>& pos, const RopeParams& p,
                   Tensor* dx);

namespace ref {
Tensor rope(const Tensor& x, const std::vector<int32_t>& pos, const RopeParams& p);
void rope_backward(const Tensor& dy, const std::vector<int32_t>& pos, const RopeParams& p,
                   Tensor* dx);
}  // namespace ref

}  // namespace ocellus::ops
