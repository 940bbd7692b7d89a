#pragma once
// Matrix product with the weight layout of GGUF and PyTorch's nn.Linear: w is [m, k], one output
// feature per row, in any storage dtype; activations are f32.
#include <memory>
#include <utility>
#include <vector>

#include "ocellus/core/blocks.h"
#include "ocellus/core/tensor.h"

namespace ocellus::ops {

// y[..., m] = x[..., k] · wᵀ (+ bias[m]).
// f32 weights go to OpenBLAS sgemm. q8_0 / q4_0 weights: x is quantized to q8_0 blocks (8-bit
// values, an f16 scale per 32) and multiplied with integer dot kernels for any number of rows,
// exactly as llama.cpp computes them. f16 / bf16 weights: for a few rows of x (decode) the SIMD
// dot kernels read each weight once; for many rows (prefill, training) weight tiles are
// dequantized and multiplied with sgemm.
Tensor matmul(const Tensor& x, const Tensor& w, const Tensor* bias = nullptr);

// A weight prepared once for many products (a model's linear layers). q4_0 and q8_0 matrices are
// repacked into 16-row tiles (BlockQ4_0x16 / BlockQ8_0x16) whose kernels keep one row per lane
// and need no horizontal sums; every product with them (decode and prefill) uses the tiles.
// Other memory-mapped matrices are copied into huge-page memory. Copies share the data.
class PreparedWeight {
 public:
  PreparedWeight() = default;
  explicit PreparedWeight(Tensor w);
  const Tensor& tensor() const { return w_; }
  bool packed() const { return packed_ != nullptr || packed8_ != nullptr; }
  const BlockQ4_0x16* tiles() const {
    return packed_ ? reinterpret_cast<const BlockQ4_0x16*>(packed_->data()) : nullptr;
  }
  const BlockQ8_0x16* tiles_q8() const {
    return packed8_ ? reinterpret_cast<const BlockQ8_0x16*>(packed8_->data()) : nullptr;
  }
  // q4_K / q6_K matrices of whole 8-row tiles, repacked (BlockQ4Kx8 / BlockQ6Kx8 [m/8, k/256]);
  // null otherwise.
  const BlockQ4Kx8* tiles_q4_K() const {
    return packed_k_ && w_.dtype() == DType::Q4_K ? reinterpret_cast<const BlockQ4Kx8*>(packed_k_->data()) : nullptr;
  }
  const BlockQ6Kx8* tiles_q6_K() const {
    return packed_k_ && w_.dtype() == DType::Q6_K ? reinterpret_cast<const BlockQ6Kx8*>(packed_k_->data()) : nullptr;
  }

 private:
  Tensor w_;
  // Tiles [ceil(m/16), k/32] in Storage's memory: 2 MiB-aligned with huge pages asked for before
  // the first write (memory first touched on 4 KiB pages stays on them).
  std::shared_ptr<const Storage> packed_;   // BlockQ4_0x16
  std::shared_ptr<const Storage> packed8_;  // BlockQ8_0x16
  std::shared_ptr<const Storage> packed_k_;   // BlockQ4Kx8 or BlockQ6Kx8
};

// The same product with a prepared weight; equal to matmul(x, w.tensor(), bias) up to f32
// summation order.
Tensor matmul(const Tensor& x, const PreparedWeight& w, const Tensor* bias = nullptr);

// The same product with f32 weights summed in llama.cpp's order (kern dot_f32_ggml: one 16-lane
// FMA accumulator per output, a fixed reduction tree), for reproducing that engine's f32 models
// bit for bit; slower than sgemm. Other dtypes: as matmul.
Tensor matmul_ggml_order(const Tensor& x, const PreparedWeight& w, const Tensor* bias = nullptr);

// A linear layer as the models call it: bias optional (undefined = none), summed in llama.cpp's
// order when ggml_order (the one place that choice is made for towers, connectors and text
// models), else the fast kernels.
inline Tensor linear(const Tensor& x, const PreparedWeight& w, const Tensor& bias, bool ggml_order = false) {
  const Tensor* b = bias.defined() ? &bias : nullptr;
  return ggml_order ? matmul_ggml_order(x, w, b) : matmul(x, w, b);
}

// Several linear layers over the same input, y_i = x · w_iᵀ + b_i (a decode step's q / k / v, or
// gate / up). For a few rows of x and weights all packed (q4_0 or q8_0, in any mix): one pass,
// the activations quantized once and the tiles of all the weights shared out among the threads
// in one parallel region (one fork / join instead of one per weight, and no thread idle at the
// end of a small matrix) — the path matmul takes for one packed weight. Otherwise one linear
// each. Results equal linear's, bit for bit.
std::vector<Tensor> linear_many(const Tensor& x, const std::vector<std::pair<const PreparedWeight*, Tensor>>& layers,
                                bool ggml_order = false);

// Gradients of y = x · wᵀ + b, accumulated (+=) into the tensors given (any may be null):
// dx [..., k] += dy · w (dx_overwrite: dx = dy · w, its old contents ignored);  dw [m, k] += dyᵀ · x (w must be f32);  db [m] += Σ dy.
void matmul_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor* dw,
                     Tensor* db,
                     bool dx_overwrite = false);

// Rows of x below which the dot-product (matrix-vector) path is used for f16 / bf16 weights.
constexpr int64_t kMatvecMaxRows = 20;

namespace ref {
// Naive references: every weight dequantized by the scalar routines, sums in double.
Tensor matmul(const Tensor& x, const Tensor& w, const Tensor* bias = nullptr);
void matmul_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor* dw,
                     Tensor* db);
// llama.cpp's f32 dot product stated plainly: product i < 16 floor(n / 16) is fused (fma) into
// lane i % 16 in index order; the lanes are added (t + t+8), then (t + t+4), then (0 + 2) +
// (1 + 3); the remaining products are fused into that sum one by one.
float dot_ggml_order(const float* w, const float* x, int64_t n);
// Each output an f32 dot in that order over the weight row and the input row, then + bias (in
// f32). Other weight dtypes: ref::matmul, as the fast op takes matmul.
Tensor matmul_ggml_order(const Tensor& x, const PreparedWeight& w, const Tensor* bias = nullptr);
}  // namespace ref

}  // namespace ocellus::ops
