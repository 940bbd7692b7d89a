#pragma once
// Scaled dot-product attention with grouped-query heads. The fast kernel streams over the keys
// with an online softmax (flash-attention style): memory O(seq) per head, never O(seq²).
#include "ocellus/core/tensor.h"

namespace ocellus::ops {

struct AttentionParams {
  float scale = 1.0f;           // usually 1/sqrt(head_dim)
  bool causal = false;          // query i sees keys j <= i + (n_kv - n_q): queries are the last n_q
  const Tensor* mask = nullptr;  // optional additive mask [n_q, n_kv] (−inf blocks), f32
  // Round each normalized probability to f16 before it weights the values, as llama.cpp's CPU
  // attention over an f16 V cache does (it multiplies f16 V by the probabilities converted to
  // f16). Keeps one row of scores per thread (O(n_kv)); used to reproduce that engine's numerics.
  bool f16_probs = false;
};

// q [n_q, n_head, d], k [n_kv, n_kv_head, d], v [n_kv, n_kv_head, dv]; n_head a multiple of
// n_kv_head (query head h reads kv head h / (n_head / n_kv_head)). Returns [n_q, n_head, dv].
// lse, if given, receives the log-sum-exp of each query's scores [n_head, n_q] for the backward.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p,
                 Tensor* lse = nullptr);
// Gradients from the forward's output and lse, recomputing the probabilities block by block.
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& dout, const AttentionParams& p,
                        Tensor* dq, Tensor* dk, Tensor* dv);

// Bidirectional attention rounded as llama.cpp's CLIP graph computes it on an AVX-512 CPU:
// Q scaled first (ggml_scale), each score and each output an unfused sequential dot product
// (ggml_vec_dot_f32 below its SIMD step), softmax with llama.cpp's vector exp for each full
// 16-wide block (summed as a tree into a double) and the C library's expf for the rest. O(n_kv)
// memory per query; used to reproduce that engine's vision towers bit for bit.
Tensor attention_ggml_order(const Tensor& q, const Tensor& k, const Tensor& v, float scale);

// llama.cpp's AVX-512 exp (ggml_v_expf), one lane: a degree-5 polynomial on the reduced
// argument, scaled by 2^n. Within 1.5 ulp of exp; inputs below -87 flush towards 0.
float expf_ggml(float x);

namespace ref {
// Materializes the full score matrix.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p,
                 Tensor* lse = nullptr);
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& dout, const AttentionParams& p,
                        Tensor* dq, Tensor* dk, Tensor* dv);
}  // namespace ref

}  // namespace ocellus::ops
