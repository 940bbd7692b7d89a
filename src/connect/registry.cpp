#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>

#include "common.h"
#include "ocellus/connect/connector.h"
#include "ocellus/core/error.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/ops/embed.h"

namespace ocellus::connect {
namespace {

template <class F>
using Loader = std::unique_ptr<ConnectorOf<F>> (*)(const ConnectorConfig&, const nn::Maker<F>&, Layout);

struct Type {
  const char* name;
  Loader<nn::Infer> infer;
  Loader<nn::Train> train;
  std::string (*out_weight)(Layout);  // its last matrix: the rows are the output width
};

// Every connector type, by the names files use for it.
const Type kTypes[] = {
    {"linear", load_linear<nn::Infer>, load_linear<nn::Train>, detail::linear_out_weight},
    {"mlp2x_gelu", load_mlp2x_gelu<nn::Infer>, load_mlp2x_gelu<nn::Train>, detail::mlp2x_gelu_out_weight},
    // llama.cpp's clip.projector_type for LLaVA-1.5's MLP
    {"mlp", load_mlp2x_gelu<nn::Infer>, load_mlp2x_gelu<nn::Train>, detail::mlp2x_gelu_out_weight},
    {"mlp_norm", load_mlp_norm<nn::Infer>, load_mlp_norm<nn::Train>, detail::mlp_norm_out_weight},
    {"ldpv2", load_ldpv2<nn::Infer>, load_ldpv2<nn::Train>, detail::ldpv2_out_weight},
    {"attn_blocks", load_attn_blocks<nn::Infer>, load_attn_blocks<nn::Train>, detail::attn_blocks_out_weight},
    {"resampler", load_resampler<nn::Infer>, load_resampler<nn::Train>, detail::resampler_out_weight},
};

const Type& find_type(const std::string& type, const std::string& path) {
  for (const auto& t : kTypes)
    if (type == t.name) return t;
  fail(path, ": connector type '", type, "' is not supported (known: ", join(connector_types()), ")");
}

// A connector that reads merged patch features: the merge, then the connector proper.
template <class F>
class Merged final : public ConnectorOf<F> {
 public:
  Merged(std::unique_ptr<ConnectorOf<F>> inner, int64_t merge) : inner_(std::move(inner)), merge_(merge) {}
  std::string type() const override { return inner_->type(); }
  int64_t n_tokens(int64_t n_features) const override { return inner_->n_tokens(n_features / (merge_ * merge_)); }
  typename F::V forward(const F& f, const typename F::V& x) const override {
    const int64_t n = F::shape(x)[0], d = F::shape(x)[1], mm = merge_ * merge_;
    return inner_->forward(f, f.reshape(f.rows(x, merge_order(n, merge_)), {n / mm, mm * d}));
  }

 private:
  std::unique_ptr<ConnectorOf<F>> inner_;
  int64_t merge_;
};

void check_config(const ConnectorConfig& c, const std::string& path) {
  OCELLUS_CHECK(c.d_in > 0 && c.d_out > 0, path, ": connector widths must be > 0 (got ", c.d_in, " -> ", c.d_out, ")");
  OCELLUS_CHECK(c.merge >= 1, path, ": spatial merge must be >= 1 (got ", c.merge, ")");
}

ConnectorConfig inner_config(const ConnectorConfig& c) {  // the connector proper reads merge² concatenated patch features
  ConnectorConfig inner = c;
  inner.d_in = c.d_in * c.merge * c.merge, inner.merge = 1;
  return inner;
}

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
  for (const auto& t : kTypes) v.emplace_back(t.name);
  return v;
}

int64_t connector_output_width(const std::string& type, const io::TensorSource& s, Layout layout) {
  const std::string n = find_type(type, s.path).out_weight(layout);
  OCELLUS_CHECK(s.has(n), s.path, ": connector ", type, ": missing tensor '", n, "' (its rows are the output width)");
  const Tensor w = s.get(n);
  OCELLUS_CHECK(w.ndim() == 2 && w.dim(0) > 0, s.path, ": connector ", type, ": tensor '", n, "' has shape ", w.shape().str(),
                ", expected a matrix [width, ...]");
  return w.dim(0);
}

nn::Infer connector_context(const ConnectorConfig& c) {
  nn::Infer f;
  f.ggml_matmul = f.ggml_norm = c.ggml_order;
  f.act_f16 = c.act_ggml_f16;
  return f;
}

template <class F>
std::unique_ptr<ConnectorOf<F>> load_connector(const std::string& type, const ConnectorConfig& c, const nn::Maker<F>& mk,
                                               Layout layout, const std::string& path) {
  check_config(c, path);
  if (c.merge > 1) return std::make_unique<Merged<F>>(load_connector(type, inner_config(c), mk, layout, path), c.merge);
  const Type& t = find_type(type, path);
  if constexpr (std::is_same_v<F, nn::Train>) return t.train(c, mk, layout);
  else return t.infer(c, mk, layout);
}
template std::unique_ptr<ConnectorOf<nn::Infer>> load_connector(const std::string&, const ConnectorConfig&, const nn::Maker<nn::Infer>&,
                                                                 Layout, const std::string&);
template std::unique_ptr<ConnectorOf<nn::Train>> load_connector(const std::string&, const ConnectorConfig&, const nn::Maker<nn::Train>&,
                                                                 Layout, const std::string&);

std::unique_ptr<Connector> load_connector(const std::string& type, const ConnectorConfig& c, const io::TensorSource& s,
                                          Layout layout) {
  return std::make_unique<Connector>(load_connector(type, c, nn::file_maker(s, "connector"), layout, s.path), connector_context(c));
}

namespace {
const char* layout_name(Layout l) {
  switch (l) {
    case Layout::Gguf: return "GGUF";
    case Layout::HfLlava: return "Hugging Face llava";
    case Layout::LlavaOriginal: return "LLaVA";
  }
  return "?";
}
}  // namespace

std::vector<std::pair<std::string, Tensor>> connector_tensors_as(const std::string& type, const ConnectorConfig& c,
                                                                 const io::TensorSource& s, Layout from, Layout to) {
  auto load = [&](const nn::Maker<nn::Infer>& mk, bool second) { load_connector(type, c, mk, second ? to : from, s.path); };
  return nn::tensors_as(s, "connector " + type + " from " + layout_name(from) + " to " + layout_name(to) + " names", load);
}

std::vector<std::pair<std::string, Tensor>> connector_tensors_as(const std::string& type, const ConnectorConfig& c,
                                                                 const std::vector<std::pair<std::string, Tensor>>& tensors,
                                                                 Layout from, Layout to) {
  auto find = [&tensors](const std::string& n) -> const Tensor* {
    for (const auto& [name, t] : tensors)
      if (name == n) return &t;
    return nullptr;
  };
  const io::TensorSource s{"<tensors>", [find](const std::string& n) { return find(n) != nullptr; },
                           [find](const std::string& n) { return *find(n); }, {}};
  return connector_tensors_as(type, c, s, from, to);
}

}  // namespace ocellus::connect
