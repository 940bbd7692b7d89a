#pragma once
// Softmax over the last dimension (f32).
#include "ocellus/core/tensor.h"

namespace ocellus::ops {

Tensor softmax(const Tensor& x);
// From the forward's output y: dx += y ⊙ (dy − Σ dy ⊙ y).
void softmax_backward(const Tensor& y, const Tensor& dy, Tensor* dx);

namespace ref {
Tensor softmax(const Tensor& x);
void softmax_backward(const Tensor& y, const Tensor& dy, Tensor* dx);
}  // namespace ref

}  // namespace ocellus::ops
