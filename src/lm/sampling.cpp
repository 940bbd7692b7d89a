#include "ocellus/lm/sampling.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "ocellus/core/error.h"

namespace ocellus::lm {

int32_t Sampler::sample(const float* logits, int64_t n, const std::vector<int32_t>& history) {
  OCELLUS_CHECK(n > 0, "sampling: empty logits");
  std::vector<float> l(logits, logits + n);
  if (p_.repeat_penalty != 1.0f && p_.repeat_last_n > 0) {
    std::unordered_set<int32_t> recent;
    for (size_t i = history.size() > size_t(p_.repeat_last_n) ? history.size() - size_t(p_.repeat_last_n) : 0;
         i < history.size(); ++i)
      recent.insert(history[i]);
    for (int32_t t : recent)
      if (t >= 0 && t < n) l[size_t(t)] = l[size_t(t)] > 0 ? l[size_t(t)] / p_.repeat_penalty : l[size_t(t)] * p_.repeat_penalty;
  }
  if (p_.temperature <= 0.0f) return int32_t(std::max_element(l.begin(), l.end()) - l.begin());

  // Candidates by logit, best first; top-k first (it bounds the sort).
  std::vector<int32_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[size_t(i)] = int32_t(i);
  const size_t k = p_.top_k > 0 ? std::min<size_t>(size_t(p_.top_k), idx.size()) : idx.size();
  auto better = [&](int32_t a, int32_t b) { return l[size_t(a)] != l[size_t(b)] ? l[size_t(a)] > l[size_t(b)] : a < b; };
  std::partial_sort(idx.begin(), idx.begin() + long(k), idx.end(), better);
  idx.resize(k);
  std::vector<double> pr(k);
  const double mx = l[size_t(idx[0])];
  double sum = 0;
  for (size_t i = 0; i < k; ++i) sum += pr[i] = std::exp((double(l[size_t(idx[i])]) - mx) / p_.temperature);
  for (double& v : pr) v /= sum;
  size_t keep = k;
  if (p_.min_p > 0.0f)  // drop tokens below min_p times the best one's probability
    for (size_t i = 1; i < keep; ++i)
      if (pr[i] < p_.min_p * pr[0]) { keep = i; break; }
  if (p_.top_p < 1.0f) {  // the smallest prefix reaching top_p
    double c = 0;
    for (size_t i = 0; i < keep; ++i)
      if ((c += pr[i]) >= p_.top_p) { keep = i + 1; break; }
  }
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += pr[i];
  double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
  for (size_t i = 0; i < keep; ++i)
    if ((r -= pr[i]) <= 0) return idx[i];
  return idx[keep - 1];
}

}  // namespace ocellus::lm
