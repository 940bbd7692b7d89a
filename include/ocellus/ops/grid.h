#pragma once
// Ops over a square grid of rows: x [g·g, d] holds the features of a g x g grid of patches in
// row-major order, channels last. MobileVLM V2's LDPv2 connector pools such a grid and runs a
// depthwise convolution over it (its position-encoding generator). f32; backward functions
// accumulate (+=) into the grads given (null: not wanted).
#include <cstdint>

#include "ocellus/core/tensor.h"

namespace ocellus::ops {

// The side g of the square grid that n rows form; throws (naming op) when n is not a square, or
// not the square of an even side when even.
int64_t grid_side(int64_t n, const char* op, bool even = false);

// x [g·g, d] (g even) -> [(g/2)², d]: the mean of each 2x2 block of the grid (PyTorch's
// AdaptiveAvgPool2d to half the side), summed as ((x₀₀ + x₀₁) + x₁₀) + x₁₁, then times 1/4.
Tensor avg_pool2(const Tensor& x);
// dx [g·g, d] += each block's share dy / 4.
void avg_pool2_backward(const Tensor& dy, Tensor* dx);

// x [g·g, d], w with d rows of 9 taps ([d, 9], [d, 3, 3] or [d, 1, 3, 3]: PyTorch's depthwise
// Conv2d weight, row-major taps), b [d] or null -> [g·g, d]: b + Σ_taps w[c, tap] · x[neighbour, c]
// with zero padding 1 (stride 1), summed from the bias in tap order.
Tensor depthwise3x3(const Tensor& x, const Tensor& w, const Tensor* b);
void depthwise3x3_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor* dw,
                           Tensor* db);

namespace ref {
Tensor avg_pool2(const Tensor& x);
void avg_pool2_backward(const Tensor& dy, Tensor* dx);
Tensor depthwise3x3(const Tensor& x, const Tensor& w, const Tensor* b);
void depthwise3x3_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor* dw,
                           Tensor* db);
}  // namespace ref

}  // namespace ocellus::ops
