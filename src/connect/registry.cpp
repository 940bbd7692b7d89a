#include <algorithm>
#include <utility>

#include "ocellus/connect/connector.h"
#include "ocellus/core/error.h"

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

}  // namespace

std::vector<std::string> connector_types() {
  std::vector<std::string> v;
  for (const auto& t : kTypes) v.emplace_back(t.first);
  return v;
}

std::unique_ptr<Connector> load_connector(const std::string& type, const ConnectorConfig& c,
                                          const io::TensorSource& s, Layout layout) {
  OCELLUS_CHECK(c.d_in > 0 && c.d_out > 0, s.path, ": connector widths must be > 0 (got ", c.d_in, " -> ", c.d_out, ")");
  for (const auto& t : kTypes)
    if (type == t.first) return t.second(c, s, layout);
  std::string known;
  for (const auto& t : kTypes) known += std::string(known.empty() ? "" : ", ") + t.first;
  fail(s.path, ": connector type '", type, "' is not supported (known: ", known, ")");
}

}  // namespace ocellus::connect
