#include "ocellus/train/optim.h"

#include <cmath>

#include "ocellus/core/error.h"
#include "ocellus/core/threads.h"
#include "ops/kernels/kernels.h"

namespace ocellus::train {

AdamW::AdamW(std::vector<ParamGroup> groups, double beta1, double beta2, double eps)
    : groups_(std::move(groups)), b1_(beta1), b2_(beta2), eps_(eps) {
  OCELLUS_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "adamw: betas must lie in [0, 1)");
  OCELLUS_CHECK(eps > 0, "adamw: eps must be > 0");
  for (const ParamGroup& g : groups_) {
    OCELLUS_CHECK(g.lr >= 0 && g.weight_decay >= 0, "adamw: learning rate and weight decay must be >= 0");
    for (const ag::Var& p : g.params) {
      m_.push_back(Tensor::zeros(p->value.shape()));
      v_.push_back(Tensor::zeros(p->value.shape()));
    }
  }
}

void AdamW::step(double lr_factor) {
  ++t_;
  // As torch.optim.AdamW (single-tensor path), in float32 arithmetic.
  const double bc1 = 1.0 - std::pow(b1_, double(t_)), bc2 = 1.0 - std::pow(b2_, double(t_));
  const kern::Table& K = kern::active();
  size_t idx = 0;
  for (const ParamGroup& g : groups_) {
    const double lr = g.lr * lr_factor;
    const kern::AdamWStep c{float(1.0 - lr * g.weight_decay), float(b1_), float(b2_), float(std::sqrt(bc2)),
                            float(eps_), float(lr / bc1)};
    for (const ag::Var& p : g.params) {
      Tensor &m = m_[idx], &v = v_[idx];
      ++idx;
      if (!p->requires_grad || !p->grad.defined()) continue;
      float* w = p->value.data<float>();
      const float* gr = p->grad.data<float>();
      float *mp = m.data<float>(), *vp = v.data<float>();
      parallel_for(p->value.numel(), 1 << 14, [&](int64_t a, int64_t b) { K.adamw(w + a, mp + a, vp + a, gr + a, b - a, c); });
    }
  }
}

void AdamW::zero_grad() {
  for (const ParamGroup& g : groups_)
    for (const ag::Var& p : g.params) p->grad = Tensor();
}

double clip_grad_norm(const std::vector<ag::Var>& params, double max_norm) {
  double sq = 0;
  for (const ag::Var& p : params) {
    if (!p->grad.defined()) continue;
    const float* g = p->grad.data<float>();
    const int64_t n = p->grad.numel(), chunks = std::max<int64_t>(1, n / (1 << 15));
    std::vector<double> part(size_t(chunks), 0.0);  // fixed chunks: the sum does not depend on threads
    parallel_for(chunks, 1, [&](int64_t a, int64_t b) {
      for (int64_t c = a; c < b; ++c) {
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        const int64_t lo = n * c / chunks, hi = n * (c + 1) / chunks;
        int64_t i = lo;
        for (; i + 4 <= hi; i += 4)
          s0 += double(g[i]) * g[i], s1 += double(g[i + 1]) * g[i + 1], s2 += double(g[i + 2]) * g[i + 2], s3 += double(g[i + 3]) * g[i + 3];
        for (; i < hi; ++i) s0 += double(g[i]) * g[i];
        part[size_t(c)] = (s0 + s1) + (s2 + s3);
      }
    });
    for (double v : part) sq += v;
  }
  const double norm = std::sqrt(sq);
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0)
    for (const ag::Var& p : params) {
      if (!p->grad.defined()) continue;
      float* g = p->grad.data<float>();
      const float c = float(coef);
      parallel_for(p->grad.numel(), 1 << 14, [&](int64_t a, int64_t b) {
        for (int64_t i = a; i < b; ++i) g[i] *= c;
      });
    }
  return norm;
}

double cosine_schedule(int64_t step, int64_t warmup, int64_t total, double min_ratio) {
  if (step < warmup) return double(step) / double(std::max<int64_t>(1, warmup));
  const double progress = double(step - warmup) / double(std::max<int64_t>(1, total - warmup));
  const double c = 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, progress)));
  return min_ratio + (1.0 - min_ratio) * c;
}

}  // namespace ocellus::train
