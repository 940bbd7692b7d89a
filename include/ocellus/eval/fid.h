#pragma once
// Fréchet distance between two sets of features (Heusel et al. 2017, "FID"): each set as a
// Gaussian (mean, unbiased covariance), d² = |μ₁ - μ₂|² + tr Σ₁ + tr Σ₂ - 2 tr (Σ₁ Σ₂)^½, with
// tr (Σ₁ Σ₂)^½ the sum of the square roots of the eigenvalues of Σ₁^½ Σ₂ Σ₁^½ (symmetric,
// positive semi-definite; negative rounding clamped to 0). All in double; the eigenvalues by
// cyclic Jacobi rotations.
#include <cstdint>
#include <vector>

#include "ocellus/core/tensor.h"

namespace ocellus::eval {

// a [n, d], b [m, d] f32, n, m >= 2.
double frechet_distance(const Tensor& a, const Tensor& b);

// Eigenvalues (ascending) and, when vectors is given, the eigenvectors as its columns, of a
// symmetric matrix s [d, d] (row-major, double).
std::vector<double> symmetric_eigen(std::vector<double> s, int64_t d, std::vector<double>* vectors = nullptr);

}  // namespace ocellus::eval
