#include "ocellus/ops/shape.h"

#include <cstring>

#include "ocellus/ops/elementwise.h"
#include "ops/util.h"

namespace ocellus::ops {
namespace {

int norm_dim(int dim, int ndim, const char* op) {
  if (dim < 0) dim += ndim;
  OCELLUS_CHECK(dim >= 0 && dim < ndim, op, ": dimension out of range for ", ndim, "-D tensors");
  return dim;
}

Shape concat_shape(const std::vector<Tensor>& xs, int dim, const char* op) {
  OCELLUS_CHECK(!xs.empty(), op, ": nothing to concatenate");
  Shape s = xs[0].shape();
  s[dim] = 0;
  for (const Tensor& x : xs) {
    detail::require_f32(x, op, "input");
    OCELLUS_CHECK(x.ndim() == s.ndim, op, ": inputs differ in rank");
    for (int d = 0; d < s.ndim; ++d)
      OCELLUS_CHECK(d == dim || x.dim(d) == s[d], op, ": shapes ", xs[0].shape().str(), " and ",
                    x.shape().str(), " differ outside dim ", dim);
    s[dim] += x.dim(dim);
  }
  return s;
}

// dst += src (same shape; dst contiguous, src any strides).
void accumulate(Tensor* dst, const Tensor& src) {
  const Tensor s = src.contiguous();
  const float* sp = s.data<float>();
  float* dp = dst->data<float>();
  for (int64_t i = 0; i < s.numel(); ++i) dp[i] += sp[i];
}

}  // namespace

Tensor concat(const std::vector<Tensor>& xs, int dim) {
  dim = norm_dim(dim, xs.empty() ? 1 : xs[0].ndim(), "concat");
  const Shape s = concat_shape(xs, dim, "concat");
  Tensor out = Tensor::empty(s);
  // Blocks of the trailing dims [dim, ...] are contiguous: outer × (x.dim(dim) * inner) floats.
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < dim; ++d) outer *= s[d];
  for (int d = dim + 1; d < s.ndim; ++d) inner *= s[d];
  int64_t off = 0;
  for (const Tensor& x_in : xs) {
    const Tensor x = x_in.contiguous();
    const int64_t chunk = x.dim(dim) * inner;
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(out.data<float>() + o * s[dim] * inner + off, x.data<float>() + o * chunk,
                  size_t(chunk) * sizeof(float));
    off += chunk;
  }
  return out;
}

void concat_backward(const Tensor& dy, int dim, const std::vector<Tensor*>& dxs) {
  dim = norm_dim(dim, dy.ndim(), "concat_backward");
  int64_t start = 0;
  for (Tensor* dx : dxs) {
    OCELLUS_CHECK(dx, "concat_backward: every input's grad must be given (its size places the next)");
    slice_backward(dy.slice(dim, start, start + dx->dim(dim)), dim, 0, dx);
    start += dx->dim(dim);
  }
  OCELLUS_CHECK(start == dy.dim(dim), "concat_backward: grads cover ", start, " of ", dy.dim(dim));
}

Tensor slice(const Tensor& x, int dim, int64_t start, int64_t end) {
  detail::require_f32(x, "slice", "x");
  return x.slice(norm_dim(dim, x.ndim(), "slice"), start, end).clone();
}

void slice_backward(const Tensor& dy, int dim, int64_t start, Tensor* dx) {
  if (!dx) return;
  dim = norm_dim(dim, dx->ndim(), "slice_backward");
  Tensor region = dx->slice(dim, start, start + dy.dim(dim));
  OCELLUS_CHECK(region.shape() == dy.shape(), "slice_backward: dy ", dy.shape().str(),
                " does not fit dx ", dx->shape().str());
  if (region.is_contiguous()) {
    accumulate(&region, dy);
    return;
  }
  Tensor sum = add(region, dy);  // strided region: add, then copy back row by row
  detail::for_each_index(region.shape(), [&](const int64_t* i) {
    detail::elem(region, i) = detail::elem(sum, i);
  });
}

Tensor transpose(const Tensor& x, int a, int b) {
  detail::require_f32(x, "transpose", "x");
  return x.transpose(norm_dim(a, x.ndim(), "transpose"), norm_dim(b, x.ndim(), "transpose")).clone();
}

void transpose_backward(const Tensor& dy, int a, int b, Tensor* dx) {
  if (!dx) return;
  detail::check_grad(dx, dy.transpose(a, b).shape(), "transpose_backward", "dx");
  accumulate(dx, dy.transpose(a, b));
}

namespace ref {

Tensor concat(const std::vector<Tensor>& xs, int dim) {
  dim = norm_dim(dim, xs.empty() ? 1 : xs[0].ndim(), "ref::concat");
  Tensor out = Tensor::empty(concat_shape(xs, dim, "ref::concat"));
  int64_t off = 0;
  for (const Tensor& x : xs) {
    detail::for_each_index(x.shape(), [&](const int64_t* i) {
      int64_t o[kMaxDims] = {0, 0, 0, 0};
      for (int d = 0; d < x.ndim(); ++d) o[d] = i[d] + (d == dim ? off : 0);
      detail::elem(out, o) = detail::elem(x, i);
    });
    off += x.dim(dim);
  }
  return out;
}

void concat_backward(const Tensor& dy, int dim, const std::vector<Tensor*>& dxs) {
  dim = norm_dim(dim, dy.ndim(), "ref::concat_backward");
  int64_t off = 0;
  for (Tensor* dx : dxs) {
    slice_backward(dy.slice(dim, off, off + dx->dim(dim)), dim, 0, dx);
    off += dx->dim(dim);
  }
}

Tensor slice(const Tensor& x, int dim, int64_t start, int64_t end) {
  dim = norm_dim(dim, x.ndim(), "ref::slice");
  Shape s = x.shape();
  s[dim] = end - start;
  Tensor out = Tensor::empty(s);
  detail::for_each_index(s, [&](const int64_t* i) {
    int64_t src[kMaxDims] = {0, 0, 0, 0};
    for (int d = 0; d < s.ndim; ++d) src[d] = i[d] + (d == dim ? start : 0);
    detail::elem(out, i) = detail::elem(x, src);
  });
  return out;
}

void slice_backward(const Tensor& dy, int dim, int64_t start, Tensor* dx) {
  if (!dx) return;
  dim = norm_dim(dim, dx->ndim(), "ref::slice_backward");
  detail::for_each_index(dy.shape(), [&](const int64_t* i) {
    int64_t dst[kMaxDims] = {0, 0, 0, 0};
    for (int d = 0; d < dy.ndim(); ++d) dst[d] = i[d] + (d == dim ? start : 0);
    detail::elem(*dx, dst) += detail::elem(dy, i);
  });
}

Tensor transpose(const Tensor& x, int a, int b) {
  a = norm_dim(a, x.ndim(), "ref::transpose");
  b = norm_dim(b, x.ndim(), "ref::transpose");
  Shape s = x.shape();
  std::swap(s.d[a], s.d[b]);
  Tensor out = Tensor::empty(s);
  detail::for_each_index(s, [&](const int64_t* i) {
    int64_t src[kMaxDims] = {0, 0, 0, 0};
    for (int d = 0; d < s.ndim; ++d) src[d] = i[d];
    std::swap(src[a], src[b]);
    detail::elem(out, i) = detail::elem(x, src);
  });
  return out;
}

void transpose_backward(const Tensor& dy, int a, int b, Tensor* dx) {
  if (!dx) return;
  a = norm_dim(a, dy.ndim(), "ref::transpose_backward");
  b = norm_dim(b, dy.ndim(), "ref::transpose_backward");
  detail::for_each_index(dy.shape(), [&](const int64_t* i) {
    int64_t dst[kMaxDims] = {0, 0, 0, 0};
    for (int d = 0; d < dy.ndim(); ++d) dst[d] = i[d];
    std::swap(dst[a], dst[b]);
    detail::elem(*dx, dst) += detail::elem(dy, i);
  });
}

}  // namespace ref
}  // namespace ocellus::ops
