#pragma once
// Normalization over the last dimension. Backward functions accumulate (+=) into the grads given.
#include "ocellus/core/tensor.h"

namespace ocellus::ops {

// y = (x - mean) / sqrt(var + eps) * w + b; w and b ([d]) may be null (no affine part).
Tensor layer_norm(const Tensor& x, const Tensor* w, const Tensor* b, float eps);
void layer_norm_backward(const Tensor& x, const Tensor* w, const Tensor& dy, float eps,
                         Tensor* dx, Tensor* dw, Tensor* db);

// The same LayerNorm rounded as llama.cpp's CPU graph rounds it (ggml_norm, then ggml_mul by w,
// then ggml_add of b): sums in double, x - mean stored in f32 and scaled by 1/sqrt(var + eps),
// each affine step rounded on its own. For reproducing that engine's numbers bit for bit.
Tensor layer_norm_ggml_order(const Tensor& x, const Tensor* w, const Tensor* b, float eps);

// LayerNorm with optional (undefined) weight and bias, rounded as llama.cpp when ggml_order.
inline Tensor layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, bool ggml_order) {
  const Tensor* wp = w.defined() ? &w : nullptr;
  const Tensor* bp = b.defined() ? &b : nullptr;
  return ggml_order ? layer_norm_ggml_order(x, wp, bp, eps) : layer_norm(x, wp, bp, eps);
}

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
