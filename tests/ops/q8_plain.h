#pragma once
// llama.cpp's q8_0 rounding of activations (its AVX path) stated plainly, for the kernel and
// matmul tests: per block of 32 the scale d = amax / 127 kept at f16 precision, the values
// round-half-even(x · 127 / amax), s = d Σ q.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ocellus/core/dtype.h"

namespace ocellus::test {

struct Q8Plain {
  std::vector<int8_t> qs;
  std::vector<float> d, s;
};

inline Q8Plain quantize_q8_plain(const float* x, int64_t n) {
  Q8Plain r{std::vector<int8_t>(size_t(n)), std::vector<float>(size_t(n / 32)), std::vector<float>(size_t(n / 32))};
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    r.d[size_t(b)] = fp16_to_f32(f32_to_fp16(amax / 127.0f));
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      const float v = amax == 0.0f ? 0.0f : x[b * 32 + j] * (127.0f / amax);
      float q = std::floor(v + 0.5f);
      if (q - v == 0.5f && std::fmod(q, 2.0f) != 0.0f) q -= 1.0f;  // a tie goes to the even value
      r.qs[size_t(b * 32 + j)] = int8_t(q);
      sum += int(q);
    }
    r.s[size_t(b)] = r.d[size_t(b)] * float(sum);
  }
  return r;
}

}  // namespace ocellus::test
