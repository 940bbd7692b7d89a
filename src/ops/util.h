#pragma once
// Helpers private to the op implementations.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "ocellus/core/error.h"
#include "ocellus/core/tensor.h"

namespace ocellus::ops::detail {

inline void require_f32(const Tensor& t, const char* op, const char* what) {
  OCELLUS_CHECK(t.defined(), op, ": ", what, " is undefined");
  OCELLUS_CHECK(t.dtype() == DType::F32, op, ": ", what, " must be f32, got ",
                dtype_name(t.dtype()));
}

// Calls fn(idx) for every index of shape, last dimension fastest; idx has shape.ndim entries.
template <typename Fn>
void for_each_index(const Shape& shape, Fn&& fn) {
  int64_t idx[kMaxDims] = {0, 0, 0, 0};
  const int64_t n = shape.numel();
  for (int64_t flat = 0; flat < n; ++flat) {
    fn(static_cast<const int64_t*>(idx));
    for (int d = shape.ndim - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

// Strided f32 element access by a full index.
inline float& elem(const Tensor& t, const int64_t* idx) {
  uint8_t* p = t.raw();
  for (int d = 0; d < t.ndim(); ++d) p += idx[d] * t.stride(d);
  return *reinterpret_cast<float*>(p);
}

// A grad tensor given to a backward function must match the shape it is the gradient of.
inline void check_grad(const Tensor* g, const Shape& shape, const char* op, const char* what) {
  if (!g) return;
  require_f32(*g, op, what);
  OCELLUS_CHECK(g->shape() == shape, op, ": ", what, " has shape ", g->shape().str(),
                ", expected ", shape.str());
  OCELLUS_CHECK(g->is_contiguous() && g->writable(), op, ": ", what,
                " must be a contiguous writable tensor");
}

// Σ f(j) and max f(j) over j in [0, n) in 16 independent float lanes (each a vector register's
// lane once vectorized; one running sum or max is a dependency chain of n steps). The lanes' sums
// are added in double at the end.
template <typename F>
double lane_sum(int64_t n, F f) {
  float a[16] = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int t = 0; t < 16; ++t) a[t] += f(j + t);
  double sum = 0;
  for (; j < n; ++j) sum += double(f(j));
  for (int t = 0; t < 16; ++t) sum += double(a[t]);
  return sum;
}

template <typename F>
float lane_max(int64_t n, F f) {
  float m[16];
  std::fill(m, m + 16, -std::numeric_limits<float>::infinity());
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int t = 0; t < 16; ++t) m[t] = std::max(m[t], f(j + t));
  for (; j < n; ++j) m[0] = std::max(m[0], f(j));
  return *std::max_element(m, m + 16);
}

}  // namespace ocellus::ops::detail
