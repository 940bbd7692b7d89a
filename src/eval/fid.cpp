#include "ocellus/eval/fid.h"

#include <algorithm>
#include <cmath>

#include "ocellus/core/error.h"

namespace ocellus::eval {

std::vector<double> symmetric_eigen(std::vector<double> s, int64_t d, std::vector<double>* vectors) {
  OCELLUS_CHECK(d >= 1 && int64_t(s.size()) == d * d, "eigen: a ", d, "x", d, " matrix needs ", d * d, " values");
  std::vector<double> v(size_t(d * d), 0.0);
  for (int64_t i = 0; i < d; ++i) v[size_t(i * d + i)] = 1.0;
  auto at = [d](std::vector<double>& m, int64_t i, int64_t j) -> double& { return m[size_t(i * d + j)]; };
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0, total = 0;
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j) (i == j ? total : off) += at(s, i, j) * at(s, i, j);
    if (off <= 1e-30 * (total + off) || off == 0) break;
    for (int64_t p = 0; p < d - 1; ++p)
      for (int64_t q = p + 1; q < d; ++q) {
        const double apq = at(s, p, q);
        if (apq == 0) continue;
        // The rotation that zeroes (p, q): tan θ from the 2x2 block (Golub & Van Loan 8.5.2).
        const double tau = (at(s, q, q) - at(s, p, p)) / (2 * apq);
        const double t = (tau >= 0 ? 1.0 : -1.0) / (std::fabs(tau) + std::sqrt(1 + tau * tau));
        const double c = 1 / std::sqrt(1 + t * t), sn = t * c;
        for (int64_t k = 0; k < d; ++k) {  // columns p, q
          const double kp = at(s, k, p), kq = at(s, k, q);
          at(s, k, p) = c * kp - sn * kq, at(s, k, q) = sn * kp + c * kq;
        }
        for (int64_t k = 0; k < d; ++k) {  // rows p, q
          const double pk = at(s, p, k), qk = at(s, q, k);
          at(s, p, k) = c * pk - sn * qk, at(s, q, k) = sn * pk + c * qk;
        }
        for (int64_t k = 0; k < d; ++k) {
          const double kp = at(v, k, p), kq = at(v, k, q);
          at(v, k, p) = c * kp - sn * kq, at(v, k, q) = sn * kp + c * kq;
        }
      }
  }
  std::vector<int64_t> idx(static_cast<size_t>(d));
  for (int64_t i = 0; i < d; ++i) idx[size_t(i)] = i;
  std::sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return at(s, a, a) < at(s, b, b); });
  std::vector<double> ev;
  for (int64_t i : idx) ev.push_back(at(s, i, i));
  if (vectors) {
    vectors->assign(size_t(d * d), 0.0);
    for (int64_t c = 0; c < d; ++c)
      for (int64_t r = 0; r < d; ++r) (*vectors)[size_t(r * d + c)] = at(v, r, idx[size_t(c)]);
  }
  return ev;
}

namespace {

// Mean [d] and unbiased covariance [d, d] of the rows of x [n, d].
void gaussian_of(const Tensor& x_in, std::vector<double>& mean, std::vector<double>& cov) {
  const Tensor x = x_in.contiguous();
  const int64_t n = x.dim(0), d = x.dim(1);
  const float* p = x.data<float>();
  mean.assign(size_t(d), 0.0), cov.assign(size_t(d * d), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) mean[size_t(j)] += p[i * d + j] / double(n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) {
      const double a = p[i * d + j] - mean[size_t(j)];
      for (int64_t k = j; k < d; ++k) cov[size_t(j * d + k)] += a * (p[i * d + k] - mean[size_t(k)]) / double(n - 1);
    }
  for (int64_t j = 0; j < d; ++j)
    for (int64_t k = 0; k < j; ++k) cov[size_t(j * d + k)] = cov[size_t(k * d + j)];
}

}  // namespace

double frechet_distance(const Tensor& a, const Tensor& b) {
  OCELLUS_CHECK(a.dtype() == DType::F32 && b.dtype() == DType::F32 && a.ndim() == 2 && b.ndim() == 2 && a.dim(1) == b.dim(1),
                "fid: features ", a.shape().str(), " and ", b.shape().str(), " must be f32 [n, d] of one width");
  OCELLUS_CHECK(a.dim(0) >= 2 && b.dim(0) >= 2, "fid: each set needs at least two samples (", a.dim(0), " and ", b.dim(0), ")");
  const int64_t d = a.dim(1);
  std::vector<double> m1, c1, m2, c2, vecs;
  gaussian_of(a, m1, c1), gaussian_of(b, m2, c2);
  // Σ₁^½ = V diag(√λ) Vᵀ.
  const std::vector<double> l1 = symmetric_eigen(c1, d, &vecs);
  std::vector<double> root(size_t(d * d), 0.0), m(size_t(d * d), 0.0), t(size_t(d * d), 0.0);
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j)
      for (int64_t k = 0; k < d; ++k)
        root[size_t(i * d + j)] += vecs[size_t(i * d + k)] * std::sqrt(std::max(l1[size_t(k)], 0.0)) * vecs[size_t(j * d + k)];
  for (int64_t i = 0; i < d; ++i)  // t = Σ₁^½ Σ₂, then m = t Σ₁^½
    for (int64_t k = 0; k < d; ++k)
      for (int64_t j = 0; j < d; ++j) t[size_t(i * d + j)] += root[size_t(i * d + k)] * c2[size_t(k * d + j)];
  for (int64_t i = 0; i < d; ++i)
    for (int64_t k = 0; k < d; ++k)
      for (int64_t j = 0; j < d; ++j) m[size_t(i * d + j)] += t[size_t(i * d + k)] * root[size_t(k * d + j)];
  for (int64_t i = 0; i < d; ++i)  // symmetric up to rounding: make it exactly so
    for (int64_t j = 0; j < i; ++j) m[size_t(i * d + j)] = m[size_t(j * d + i)] = (m[size_t(i * d + j)] + m[size_t(j * d + i)]) / 2;
  double tr_sqrt = 0;
  for (double l : symmetric_eigen(m, d)) tr_sqrt += std::sqrt(std::max(l, 0.0));
  double dist = 0;
  for (int64_t j = 0; j < d; ++j)
    dist += (m1[size_t(j)] - m2[size_t(j)]) * (m1[size_t(j)] - m2[size_t(j)]) + c1[size_t(j * d + j)] + c2[size_t(j * d + j)];
  return std::max(dist - 2 * tr_sqrt, 0.0);
}

}  // namespace ocellus::eval
