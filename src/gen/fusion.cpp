#include "ocellus/gen/fusion.h"

#include <cmath>

#include "ocellus/core/error.h"

namespace ocellus::gen {

Modalities Modalities::of(const std::vector<bool>& is_image) {
  Modalities m;
  for (size_t i = 0; i < is_image.size(); ++i) (is_image[i] ? m.image : m.text).push_back(int32_t(i));
  m.order.resize(is_image.size());
  for (size_t k = 0; k < m.text.size(); ++k) m.order[size_t(m.text[k])] = int32_t(k);
  for (size_t k = 0; k < m.image.size(); ++k) m.order[size_t(m.image[k])] = int32_t(m.text.size() + k);
  return m;
}

Tensor fusion_mask(int64_t n, const std::vector<std::pair<int64_t, int64_t>>& spans) {
  OCELLUS_CHECK(n > 0, "fusion: an empty sequence");
  std::vector<int64_t> span_of(size_t(n), -1);
  for (size_t s = 0; s < spans.size(); ++s) {
    const auto [a, b] = spans[s];
    OCELLUS_CHECK(0 <= a && a < b && b <= n, "fusion: image span [", a, ", ", b, ") outside the ", n, " rows");
    for (int64_t i = a; i < b; ++i) {
      OCELLUS_CHECK(span_of[size_t(i)] < 0, "fusion: image spans overlap at row ", i);
      span_of[size_t(i)] = int64_t(s);
    }
  }
  Tensor mask = Tensor::empty({n, n});
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const bool sees = j <= i || (span_of[size_t(i)] >= 0 && span_of[size_t(i)] == span_of[size_t(j)]);
      mask.data<float>()[i * n + j] = sees ? 0.0f : -INFINITY;
    }
  return mask;
}

}  // namespace ocellus::gen
