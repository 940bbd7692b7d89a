#include "ocellus/eval/perplexity.h"

#include <algorithm>
#include <cmath>

#include "ocellus/core/error.h"

namespace ocellus::eval {

Perplexity text_perplexity(const lm::LanguageModel& m, const std::vector<std::vector<int32_t>>& texts) {
  Perplexity p;
  double sum = 0;
  for (const std::vector<int32_t>& ids : texts) {
    if (ids.size() < 2) continue;
    lm::KvCache cache(m.config(), int64_t(ids.size()), DType::F32);
    const Tensor logits = m.forward_ids(ids, cache, true);  // [n, V]
    const int64_t V = logits.dim(1);
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      const float* row = logits.data<float>() + int64_t(i) * V;
      const float mx = *std::max_element(row, row + V);
      double z = 0;
      for (int64_t v = 0; v < V; ++v) z += std::exp(double(row[v] - mx));
      sum += std::log(z) + double(mx) - double(row[ids[i + 1]]);
      ++p.tokens;
    }
  }
  OCELLUS_CHECK(p.tokens > 0, "perplexity: no text of two or more tokens");
  p.nll = sum / double(p.tokens);
  p.ppl = std::exp(p.nll);
  return p;
}

}  // namespace ocellus::eval
