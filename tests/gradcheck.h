#pragma once
// Finite-difference gradient check: L = Σ f(inputs) ⊙ R for a random R; each sampled input
// element's central difference (L(x+ε) − L(x−ε)) / 2ε is compared with the analytic gradient the
// op's backward returns for dy = R.
#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <vector>

#include "testutil.h"

namespace ocellus::test {

using Forward = std::function<Tensor(const std::vector<Tensor>&)>;
// Returns one grad per input (undefined tensor = not checked), given dy.
using Backward = std::function<std::vector<Tensor>(const std::vector<Tensor>&, const Tensor&)>;

inline double weighted_sum(const Tensor& y, const Tensor& r) {
  std::vector<float> a = y.to_vector(), b = r.to_vector();
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return s;
}

inline void gradcheck(const char* name, std::vector<Tensor> inputs, const Forward& f,
                      const Backward& backward, float eps = 1e-2f, double rtol = 1e-2,
                      double atol = 2e-3, int samples = 24) {
  const Tensor y = f(inputs);
  const Tensor r = randn(y.shape(), 99);
  const std::vector<Tensor> grads = backward(inputs, r);
  ASSERT_EQ(grads.size(), inputs.size());
  std::mt19937 rng(5);
  for (size_t t = 0; t < inputs.size(); ++t) {
    if (!grads[t].defined()) continue;
    ASSERT_EQ(grads[t].shape(), inputs[t].shape()) << name << " input " << t;
    float* x = inputs[t].data<float>();
    const std::vector<float> g = grads[t].to_vector();
    const int64_t n = inputs[t].numel();
    for (int s = 0; s < std::min<int64_t>(samples, n); ++s) {
      const int64_t k = samples >= n ? s : int64_t(rng() % uint64_t(n));
      const float orig = x[k];
      x[k] = orig + eps;
      const double lp = weighted_sum(f(inputs), r);
      x[k] = orig - eps;
      const double lm = weighted_sum(f(inputs), r);
      x[k] = orig;
      const double num = (lp - lm) / (2.0 * eps);
      EXPECT_NEAR(g[k], num, atol + rtol * std::fabs(num))
          << name << ": input " << t << " element " << k;
    }
  }
}

}  // namespace ocellus::test
