#pragma once
// Matrix product with the weight layout of GGUF and PyTorch's nn.Linear: w is [m, k], one output
// feature per row, in any storage dtype; activations are f32.
#include "ocellus/core/tensor.h"

namespace ocellus::ops {

// y[..., m] = x[..., k] · wᵀ (+ bias[m]).
// f32 weights go to OpenBLAS sgemm. f16 / bf16 / q8_0 / q4_0 weights: for a few rows of x
// (decode) the SIMD dot kernels read each weight once (q8_0 / q4_0 quantize x to 8 bits, as
// llama.cpp does); for many rows (prefill, training) weight tiles are dequantized and multiplied
// with sgemm.
Tensor matmul(const Tensor& x, const Tensor& w, const Tensor* bias = nullptr);

// Gradients of y = x · wᵀ + b, accumulated (+=) into the tensors given (any may be null):
// dx [..., k] += dy · w;  dw [m, k] += dyᵀ · x (w must be f32);  db [m] += Σ dy.
void matmul_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor* dw,
                     Tensor* db);

// Rows of x below which the dot-product (matrix-vector) path is used for non-f32 weights.
constexpr int64_t kMatvecMaxRows = 8;

namespace ref {
// Naive references: every weight dequantized by the scalar routines, sums in double.
Tensor matmul(const Tensor& x, const Tensor& w, const Tensor* bias = nullptr);
void matmul_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor* dw,
                     Tensor* db);
}  // namespace ref

}  // namespace ocellus::ops
