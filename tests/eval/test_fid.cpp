// The Fréchet distance (eval/fid.h) against PyTorch's statement of it, and its identities.
#include <gtest/gtest.h>

#include <cmath>

#include "ocellus/core/error.h"
#include "ocellus/eval/fid.h"
#include "ocellus/ops/elementwise.h"
#include "testutil.h"
#include "torch_ref.h"

using namespace ocellus;
using namespace ocellus::test;

TEST(Fid, MatchesPyTorchAndItsIdentities) {
  // Correlated features: x = z · M for a random mixing M, so the covariances are not diagonal.
  auto features = [](int64_t n, uint32_t seed, float shift) {
    const Tensor z = randn({n, 12}, seed), mix = randn({12, 12}, 77, 0.5f);
    Tensor x = Tensor::zeros({n, 12});
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < 12; ++j) {
        float s = shift * float(j % 3);
        for (int64_t k = 0; k < 12; ++k) s += z.at({i, k}) * mix.at({k, j});
        x.at({i, j}) = s;
      }
    return x;
  };
  const Tensor a = features(300, 1, 0.0f), b = features(200, 2, 0.3f);
  const double fid = eval::frechet_distance(a, b);
  const std::vector<float> ref = torch_ref({"fid", write_temp("fid_a.f32", a), write_temp("fid_b.f32", b), "12", ""}, temp_path("fid.f32"));
  ASSERT_EQ(ref.size(), 1u);
  EXPECT_NEAR(fid, ref[0], 1e-5 * std::fabs(ref[0]) + 1e-6);
  EXPECT_GT(fid, 0.1);
  EXPECT_NEAR(eval::frechet_distance(a, a), 0.0, 1e-9);
  // Shifting one set by a constant vector adds exactly its squared length.
  Tensor shifted = a.clone();
  for (int64_t i = 0; i < 300; ++i) shifted.at({i, 4}) += 2.0f;
  EXPECT_NEAR(eval::frechet_distance(a, shifted), 4.0, 1e-4);
  EXPECT_THROW(eval::frechet_distance(a, randn({5, 11}, 1)), Error);
  EXPECT_THROW(eval::frechet_distance(a, randn({1, 12}, 1)), Error);
}

TEST(Fid, SymmetricEigenDecomposes) {
  const int64_t d = 6;
  const Tensor r = randn({d, d}, 3);
  std::vector<double> s(size_t(d * d));
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j) s[size_t(i * d + j)] = double(r.at({i, j})) + r.at({j, i});
  std::vector<double> v;
  const std::vector<double> ev = eval::symmetric_eigen(s, d, &v);
  ASSERT_EQ(ev.size(), size_t(d));
  EXPECT_TRUE(std::is_sorted(ev.begin(), ev.end()));
  // S v_c = λ_c v_c for every column.
  for (int64_t c = 0; c < d; ++c)
    for (int64_t i = 0; i < d; ++i) {
      double sv = 0;
      for (int64_t k = 0; k < d; ++k) sv += s[size_t(i * d + k)] * v[size_t(k * d + c)];
      EXPECT_NEAR(sv, ev[size_t(c)] * v[size_t(i * d + c)], 1e-9);
    }
}
