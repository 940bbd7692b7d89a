#pragma once
// Token embedding lookup and the ViT patch embedding (conv2d with stride = kernel).
#include <cstdint>
#include <vector>

#include "ocellus/core/tensor.h"

namespace ocellus::ops {

// Rows of table [n_vocab, d] (any dtype) for the ids -> [n, d] f32. An id outside the table is
// an error naming it.
Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids);
// dtable [n_vocab, d] += each dy row at its id (repeated ids accumulate).
void embedding_backward(const std::vector<int32_t>& ids, const Tensor& dy, Tensor* dtable);

// image [C, H, W] f32; weight [D, C, P, P] (f32 / f16 / bf16); bias [D] or null.
// Returns [n_patch, D], patches in row-major order (H/P rows of W/P); remainders are dropped as
// a strided convolution does.
Tensor patch_embed(const Tensor& image, const Tensor& weight, const Tensor* bias, int64_t patch);
// The same product summed in llama.cpp's order (matmul_ggml_order) for f32 weights, as that
// engine's conv_2d (im2col, then a matrix product) computes it; reproduces its numerics.
Tensor patch_embed_ggml_order(const Tensor& image, const Tensor& weight, const Tensor* bias, int64_t patch);
void patch_embed_backward(const Tensor& image, const Tensor& weight, const Tensor& dy,
                          int64_t patch, Tensor* dimage, Tensor* dweight, Tensor* dbias);

namespace ref {
Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids);
void embedding_backward(const std::vector<int32_t>& ids, const Tensor& dy, Tensor* dtable);
Tensor patch_embed(const Tensor& image, const Tensor& weight, const Tensor* bias, int64_t patch);
// Each output the products of its patch taken in the weight's (c, ky, kx) order and summed as
// ref::dot_ggml_order sums them, then + bias (f32 weights; others: ref::patch_embed).
Tensor patch_embed_ggml_order(const Tensor& image, const Tensor& weight, const Tensor* bias, int64_t patch);
void patch_embed_backward(const Tensor& image, const Tensor& weight, const Tensor& dy,
                          int64_t patch, Tensor* dimage, Tensor* dweight, Tensor* dbias);
}  // namespace ref

}  // namespace ocellus::ops
