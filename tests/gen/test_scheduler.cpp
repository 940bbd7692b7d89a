// The noise schedule and samplers (gen/scheduler.h) against their defining identities.
#include <gtest/gtest.h>

#include <cmath>

#include "ocellus/core/error.h"
#include "ocellus/gen/scheduler.h"
#include "testutil.h"

using namespace ocellus;
using namespace ocellus::test;

TEST(NoiseSchedule, LinearBetasAndNoising) {
  const gen::NoiseSchedule s;
  // ᾱ after one step is 1 - β_0; after all 1000 of the linear schedule about 4.04e-5 (as diffusers').
  EXPECT_DOUBLE_EQ(s.alpha_bar(0), 1.0 - 1e-4);
  EXPECT_NEAR(s.alpha_bar(999), 4.035e-5, 1e-7);
  EXPECT_DOUBLE_EQ(s.alpha_bar(-1), 1.0);
  const Tensor x0 = randn({2, 3, 3, 2}, 1), e = randn({2, 3, 3, 2}, 2);
  const Tensor xt = s.add_noise(x0, e, {0, 700});
  const double a = s.alpha_bar(700);
  EXPECT_NEAR(xt.at({1, 2, 1, 0}), std::sqrt(a) * x0.at({1, 2, 1, 0}) + std::sqrt(1 - a) * e.at({1, 2, 1, 0}), 1e-6);
  EXPECT_EQ(s.sampling_steps(4), (std::vector<int64_t>{750, 500, 250, 0}));
  EXPECT_EQ(s.sampling_steps(1000).front(), 999);
  EXPECT_THROW(s.sampling_steps(0), Error);
  EXPECT_THROW(s.add_noise(x0, e, {1}), Error);
  EXPECT_THROW(gen::NoiseSchedule(0), Error);
}

TEST(NoiseSchedule, DdimWithTheTrueNoiseLandsOnTheNoisedImageAndDdpmOnThePosteriorMean) {
  const gen::NoiseSchedule s;
  const Tensor x0 = randn({1, 4, 4, 2}, 3), e = randn({1, 4, 4, 2}, 4);
  const Tensor x600 = s.add_noise(x0, e, {600});
  // Given the true ε, DDIM maps x_600 exactly onto x_300 of the same x_0 and ε, and onto x_0 at the end.
  EXPECT_LE(max_abs_diff(s.ddim_step(x600, e, 600, 300), s.add_noise(x0, e, {300})), 2e-6);
  EXPECT_LE(max_abs_diff(s.ddim_step(x600, e, 600, -1), x0), 2e-5);
  // DDPM with z = 0 is the posterior mean μ̃(x_t, x_0) = (sqrt(ᾱ_p) β / (1 - ᾱ_t)) x_0 + (sqrt(α) (1 - ᾱ_p) / (1 - ᾱ_t)) x_t.
  const double a = s.alpha_bar(600), ap = s.alpha_bar(599), al = a / ap;
  const Tensor m = s.ddpm_step(x600, e, 600, 599, Tensor::zeros(x0.shape()));
  for (int64_t i = 0; i < 4; ++i) {
    const double want = std::sqrt(ap) * (1 - al) / (1 - a) * x0.at({0, i, 1, 1}) + std::sqrt(al) * (1 - ap) / (1 - a) * x600.at({0, i, 1, 1});
    EXPECT_NEAR(m.at({0, i, 1, 1}), want, 2e-6);
  }
  // The noise term: sqrt(β̃) · z.
  const Tensor z = randn({1, 4, 4, 2}, 5);
  const double var = (1 - ap) / (1 - a) * (1 - al);
  EXPECT_NEAR(s.ddpm_step(x600, e, 600, 599, z).at({0, 3, 0, 1}) - m.at({0, 3, 0, 1}), std::sqrt(var) * z.at({0, 3, 0, 1}), 1e-6);
  EXPECT_THROW(s.ddim_step(x600, e, 300, 600), Error);
  // Guidance: scale 1 is the conditional prediction, 0 the unconditional one.
  EXPECT_EQ(max_abs_diff(gen::guide(x0, e, 1.0f), x0), 0.0);
  EXPECT_EQ(max_abs_diff(gen::guide(x0, e, 0.0f), e), 0.0);
  EXPECT_NEAR(gen::guide(x0, e, 3.0f).at({0, 1, 2, 0}), e.at({0, 1, 2, 0}) + 3 * (x0.at({0, 1, 2, 0}) - e.at({0, 1, 2, 0})), 1e-5);
}
