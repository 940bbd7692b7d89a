#include "ocellus/ops/loss.h"

#include <vector>

#include "ops/kernels/kernels.h"

#include <cmath>
#include <vector>

#include "ocellus/core/threads.h"
#include "ops/util.h"

namespace ocellus::ops {
namespace {

int64_t check(const Tensor& logits, const std::vector<int32_t>& targets, int32_t ignore,
              const char* op) {
  detail::require_f32(logits, op, "logits");
  OCELLUS_CHECK(logits.ndim() == 2, op, ": logits must be [n, n_vocab], got ", logits.shape().str());
  OCELLUS_CHECK(int64_t(targets.size()) == logits.dim(0), op, ": ", targets.size(),
                " targets for ", logits.dim(0), " rows");
  int64_t counted = 0;
  for (size_t i = 0; i < targets.size(); ++i) {
    if (targets[i] == ignore) continue;
    OCELLUS_CHECK(targets[i] >= 0 && targets[i] < logits.dim(1), op, ": target ", targets[i],
                  " at row ", i, " is outside the vocabulary of ", logits.dim(1));
    ++counted;
  }
  return counted;
}

// log Σ exp(row) with the max subtracted.
float logsumexp(const float* r, int64_t v) {
  const float m = detail::lane_max(v, [r](int64_t j) { return r[j]; });
  return m + std::log(kern::active().sum_exp_affine(r, 1.0f, -m, v));
}

}  // namespace

float cross_entropy(const Tensor& logits_in, const std::vector<int32_t>& targets, int32_t ignore,
                    std::vector<float>* row_lse) {
  const int64_t counted = check(logits_in, targets, ignore, "cross_entropy");
  if (row_lse) row_lse->assign(targets.size(), 0.0f);
  if (counted == 0) return 0.0f;
  const Tensor logits = logits_in.contiguous();
  const int64_t n = logits.dim(0), v = logits.dim(1);
  std::vector<double> row_loss(size_t(n), 0.0);
  parallel_for(n, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      if (targets[i] == ignore) continue;
      const float* r = logits.data<float>() + i * v;
      const float lse = logsumexp(r, v);
      if (row_lse) (*row_lse)[size_t(i)] = lse;
      row_loss[i] = double(lse - r[targets[i]]);
    }
  });
  double total = 0;
  for (double l : row_loss) total += l;
  return float(total / double(counted));
}

void cross_entropy_backward(const Tensor& logits_in, const std::vector<int32_t>& targets,
                            float dloss, Tensor* dlogits, int32_t ignore, const std::vector<float>* row_lse) {
  if (!dlogits) return;
  const int64_t counted = check(logits_in, targets, ignore, "cross_entropy_backward");
  detail::check_grad(dlogits, logits_in.shape(), "cross_entropy_backward", "dlogits");
  OCELLUS_CHECK(!row_lse || row_lse->size() == targets.size(), "cross_entropy_backward: ",
                row_lse ? row_lse->size() : 0, " row log-sum-exps for ", targets.size(), " rows");
  if (counted == 0) return;
  const Tensor logits = logits_in.contiguous();
  const int64_t n = logits.dim(0), v = logits.dim(1);
  const float k = dloss / float(counted);
  parallel_for(n, 1, [&](int64_t r0, int64_t r1) {
    std::vector<float> p(static_cast<size_t>(v));  // one softmax row per thread
    for (int64_t i = r0; i < r1; ++i) {
      if (targets[i] == ignore) continue;
      const float* r = logits.data<float>() + i * v;
      float* g = dlogits->data<float>() + i * v;
      const float lse = row_lse ? (*row_lse)[size_t(i)] : logsumexp(r, v);
      kern::active().exp_affine(r, 1.0f, -lse, p.data(), v);
      for (int64_t j = 0; j < v; ++j) g[j] += k * p[size_t(j)];
      g[targets[i]] -= k;
    }
  });
}

namespace ref {

float cross_entropy(const Tensor& logits, const std::vector<int32_t>& targets, int32_t ignore) {
  const int64_t counted = check(logits, targets, ignore, "ref::cross_entropy");
  double total = 0;
  for (int64_t i = 0; i < logits.dim(0); ++i) {
    if (targets[i] == ignore) continue;
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < logits.dim(1); ++j) m = std::max(m, double(logits.at({i, j})));
    for (int64_t j = 0; j < logits.dim(1); ++j) s += std::exp(double(logits.at({i, j})) - m);
    total += m + std::log(s) - logits.at({i, targets[i]});
  }
  return counted ? float(total / double(counted)) : 0.0f;
}

void cross_entropy_backward(const Tensor& logits, const std::vector<int32_t>& targets,
                            float dloss, Tensor* dlogits, int32_t ignore) {
  const int64_t counted = check(logits, targets, ignore, "ref::cross_entropy_backward");
  if (!dlogits || counted == 0) return;
  for (int64_t i = 0; i < logits.dim(0); ++i) {
    if (targets[i] == ignore) continue;
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < logits.dim(1); ++j) m = std::max(m, double(logits.at({i, j})));
    for (int64_t j = 0; j < logits.dim(1); ++j) s += std::exp(double(logits.at({i, j})) - m);
    for (int64_t j = 0; j < logits.dim(1); ++j) {
      const double p = std::exp(double(logits.at({i, j})) - m) / s;
      dlogits->at({i, j}) += float(double(dloss) / double(counted) * (p - (j == targets[i] ? 1.0 : 0.0)));
    }
  }
}

}  // namespace ref
}  // namespace ocellus::ops
