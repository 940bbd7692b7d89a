#include <algorithm>
#include <cmath>
#include <utility>

#include "ocellus/connect/connector.h"
#include "ocellus/core/error.h"
#include "ocellus/ops/embed.h"

namespace ocellus::connect {
namespace {

using Loader = std::unique_ptr<Connector> (*)(const ConnectorConfig&, const io::TensorSource&, Layout);

// Every connector type, by the names files use for it.
const std::pair<const char*, Loader> kTypes[] = {
    {"linear", load_linear},
    {"mlp2x_gelu", load_mlp2x_gelu},
    {"mlp", load_mlp2x_gelu},  // llama.cpp's clip.projector_type for LLaVA-1.5's MLP
    {"mlp_norm", load_mlp_norm},
    {"ldpv2", load_ldpv2},
    {"attn_blocks", load_attn_blocks},
    {"resampler", load_resampler},
};

// A connector that reads merged patch features: the merge, then the connector proper.
class Merged final : public Connector {
 public:
  Merged(std::unique_ptr<Connector> inner, int64_t merge) : inner_(std::move(inner)), merge_(merge) {}
  std::string type() const override { return inner_->type(); }
  int64_t n_tokens(int64_t n_features) const override { return inner_->n_tokens(n_features / (merge_ * merge_)); }
  Tensor forward(const Tensor& features) const override { return inner_->forward(merge_patches(features, merge_)); }

 private:
  std::unique_ptr<Connector> inner_;
  int64_t merge_;
};

}  // namespace

std::vector<int32_t> merge_order(int64_t n_features, int64_t merge) {
  OCELLUS_CHECK(merge >= 1, "spatial merge must be >= 1 (got ", merge, ")");
  const auto side = int64_t(std::llround(std::sqrt(double(n_features))));
  OCELLUS_CHECK(side * side == n_features, "spatial merge needs a square grid of patches, not ", n_features, " features");
  OCELLUS_CHECK(side % merge == 0, "spatial merge ", merge, " does not divide the ", side, "x", side, " patch grid");
  std::vector<int32_t> order;
  order.reserve(size_t(n_features));
  for (int64_t I = 0; I < side / merge; ++I)
    for (int64_t J = 0; J < side / merge; ++J)
      for (int64_t a = 0; a < merge; ++a)
        for (int64_t b = 0; b < merge; ++b) order.push_back(int32_t((I * merge + a) * side + J * merge + b));
  return order;
}

Tensor merge_patches(const Tensor& features, int64_t merge) {
  if (merge == 1) return features;
  OCELLUS_CHECK(features.ndim() == 2, "spatial merge: features must be [n, d], not ", features.shape().str());
  const int64_t n = features.dim(0), d = features.dim(1);
  return ops::embedding(features.contiguous(), merge_order(n, merge)).reshape({n / (merge * merge), merge * merge * d});
}

std::vector<std::string> connector_types() {
  std::vector<std::string> v;
  for (const auto& t : kTypes) v.emplace_back(t.first);
  return v;
}

std::unique_ptr<Connector> load_connector(const std::string& type, const ConnectorConfig& c,
                                          const io::TensorSource& s, Layout layout) {
  OCELLUS_CHECK(c.d_in > 0 && c.d_out > 0, s.path, ": connector widths must be > 0 (got ", c.d_in, " -> ", c.d_out, ")");
  OCELLUS_CHECK(c.merge >= 1, s.path, ": spatial merge must be >= 1 (got ", c.merge, ")");
  if (c.merge > 1) {  // the connector proper reads merge² concatenated patch features
    ConnectorConfig inner = c;
    inner.d_in = c.d_in * c.merge * c.merge, inner.merge = 1;
    return std::make_unique<Merged>(load_connector(type, inner, s, layout), c.merge);
  }
  for (const auto& t : kTypes)
    if (type == t.first) return t.second(c, s, layout);
  std::string known;
  for (const auto& t : kTypes) known += std::string(known.empty() ? "" : ", ") + t.first;
  fail(s.path, ": connector type '", type, "' is not supported (known: ", known, ")");
}

}  // namespace ocellus::connect
