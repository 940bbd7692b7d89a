#pragma once
// Shared helpers for the tests: seeded random tensors and error norms.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "ocellus/core/tensor.h"

namespace ocellus::test {

inline Tensor randn(const Shape& shape, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
  return t;
}

// ‖a − b‖₂ / ‖b‖₂ over all elements (logical order, any strides / dtypes).
inline double rel_err(const Tensor& a, const Tensor& b) {
  std::vector<float> x = a.to_vector(), y = b.to_vector();
  if (x.size() != y.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += double(x[i] - y[i]) * double(x[i] - y[i]);
    den += double(y[i]) * double(y[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<float> x = a.to_vector(), y = b.to_vector();
  if (x.size() != y.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, double(std::fabs(x[i] - y[i])));
  return m;
}

// A non-contiguous view with the same logical values as t (2-D or more): the last two
// dimensions are stored transposed.
inline Tensor noncontiguous_copy(const Tensor& t) {
  Tensor storage = t.transpose(-1, -2).contiguous();  // values laid out transposed
  return storage.transpose(-1, -2);                   // logical view equals t
}

}  // namespace ocellus::test
