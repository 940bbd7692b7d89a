#pragma once
// Ops over batches of feature maps x [B, H, W, C], channels last (each pixel's channels one row,
// as the grid ops and the LLM's positions hold them): the convolutions, group norm and
// up-sampling of a VAE and a diffusion U-Net (LlamaFusion's image side). f32; backward functions
// accumulate (+=) into the grads given (null: not wanted). Each has a naive reference in ref::.
#include <cstdint>

#include "ocellus/core/tensor.h"

namespace ocellus::ops {

// Output side of a convolution: (n + 2 pad - k) / stride + 1 (throws naming op when < 1).
int64_t conv_out_side(int64_t n, int64_t k, int64_t stride, int64_t pad, const char* op);

// 2-D convolution, zero padding: x [B, H, W, C], w [O, k, k, C] (PyTorch's [O, C, k, k] with the
// channels moved last), b [O] or null -> [B, Ho, Wo, O]. Computed as one GEMM of the unfolded
// patches [B·Ho·Wo, k·k·C] (im2col) against w seen as [O, k·k·C].
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* b, int64_t stride, int64_t pad);
void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, int64_t stride, int64_t pad, Tensor* dx,
                     Tensor* dw, Tensor* db);

// Group norm (Wu & He 2018, PyTorch's GroupNorm): x [B, ..., C] with C split into `groups`
// consecutive groups; each (image, group) normalized by its mean and biased variance over all
// its positions and channels, then times w[c] plus b[c] (w, b [C]).
Tensor group_norm(const Tensor& x, const Tensor& w, const Tensor& b, int64_t groups, float eps);
void group_norm_backward(const Tensor& x, const Tensor& w, int64_t groups, float eps, const Tensor& dy, Tensor* dx,
                         Tensor* dw, Tensor* db);

// Nearest-neighbour up-sampling by 2: x [B, H, W, C] -> [B, 2H, 2W, C]; the backward sums each
// 2x2 block of dy into its source pixel.
Tensor upsample2x(const Tensor& x);
void upsample2x_backward(const Tensor& dy, Tensor* dx);

namespace ref {
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* b, int64_t stride, int64_t pad);
void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, int64_t stride, int64_t pad, Tensor* dx,
                     Tensor* dw, Tensor* db);
Tensor group_norm(const Tensor& x, const Tensor& w, const Tensor& b, int64_t groups, float eps);
void group_norm_backward(const Tensor& x, const Tensor& w, int64_t groups, float eps, const Tensor& dy, Tensor* dx,
                         Tensor* dw, Tensor* db);
Tensor upsample2x(const Tensor& x);
void upsample2x_backward(const Tensor& dy, Tensor* dx);
}  // namespace ref

}  // namespace ocellus::ops
