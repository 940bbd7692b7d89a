#pragma once
// Normalization over the last dimension. Backward functions accumulate (+=) into the grads given.
#include "ocellus/core/tensor.h"

namespace ocellus::ops {

// y = (x - mean) / sqrt(var + eps) * w + b; w and b ([d]) may be null (no affine part).
Tensor layer_norm(const Tensor& x, const Tensor* w, const Tensor* b, float eps);
void layer_norm_backward(const Tensor& x, const Tensor* w, const Tensor& dy, float eps,
                         Tensor* dx, Tensor* dw, Tensor* db);

// y = x / sqrt(mean(x²) + eps) * w; w ([d]) may be null.
Tensor rms_norm(const Tensor& x, const Tensor* w, float eps);
void rms_norm_backward(const Tensor& x, const Tensor* w, const Tensor& dy, float eps, Tensor* dx,
                       Tensor* dw);

namespace ref {
Tensor layer_norm(const Tensor& x, const Tensor* w, const Tensor* b, float eps);
void layer_norm_backward(const Tensor& x, const Tensor* w, const Tensor& dy, float eps,
                         Tensor* dx, Tensor* dw, Tensor* db);
Tensor rms_norm(const Tensor& x, const Tensor* w, float eps);
void rms_norm_backward(const Tensor& x, const Tensor* w, const Tensor& dy, float eps, Tensor* dx,
                       Tensor* dw);
}  // namespace ref

}  // namespace ocellus::ops
