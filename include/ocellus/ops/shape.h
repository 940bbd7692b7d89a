#pragma once
// Shape ops that copy: concat, slice, transpose (f32; results contiguous). For views without a
// copy see Tensor::slice / Tensor::transpose.
#include <vector>

#include "ocellus/core/tensor.h"

namespace ocellus::ops {

Tensor concat(const std::vector<Tensor>& xs, int dim);
// dxs[i] += the part of dy that came from xs[i] (null entries skipped).
void concat_backward(const Tensor& dy, int dim, const std::vector<Tensor*>& dxs);

Tensor slice(const Tensor& x, int dim, int64_t start, int64_t end);
// dx[..., start:end, ...] += dy
void slice_backward(const Tensor& dy, int dim, int64_t start, Tensor* dx);

Tensor transpose(const Tensor& x, int a, int b);
void transpose_backward(const Tensor& dy, int a, int b, Tensor* dx);

namespace ref {
Tensor concat(const std::vector<Tensor>& xs, int dim);
void concat_backward(const Tensor& dy, int dim, const std::vector<Tensor*>& dxs);
Tensor slice(const Tensor& x, int dim, int64_t start, int64_t end);
void slice_backward(const Tensor& dy, int dim, int64_t start, Tensor* dx);
Tensor transpose(const Tensor& x, int a, int b);
void transpose_backward(const Tensor& dy, int a, int b, Tensor* dx);
}  // namespace ref

}  // namespace ocellus::ops
