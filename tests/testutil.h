#pragma once
// Shared helpers for the tests: seeded random tensors, error norms, files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "ocellus/core/error.h"
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

// A file's bytes (the file must exist).
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A file of raw little-endian values (fixture logits, token ids).
template <typename T>
std::vector<T> read_array(const std::string& path) {
  const std::string b = read_file(path);
  std::vector<T> v(b.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), b.data(), v.size() * sizeof(T));
  return v;
}

// The message of the ocellus::Error that f throws, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A path in the test temporary folder, unique to this process: the pid and a token drawn once per
// process, because pids are reused and an earlier process's leftovers (a CI machine runs the suite
// more than once) must never be read as this one's.
inline std::string temp_path(const std::string& name) {
  static const std::string token = [] {
    std::random_device rd;
    return std::to_string(::getpid()) + "_" + std::to_string(rd() % 1000000);
  }();
  return ::testing::TempDir() + "ocellus_" + token + "_" + name;
}

}  // namespace ocellus::test
