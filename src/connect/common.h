#pragma once
// Helpers shared by the connector files.
#include <string>

#include "ocellus/connect/connector.h"
#include "ocellus/ops/matmul.h"

namespace ocellus::connect::detail {

// A linear layer's weight [rows, cols] (any dtype, prepared) and optional f32 bias [rows].
struct Linear {
  ops::PreparedWeight w;
  Tensor b;
  bool ggml_order = false;
  Tensor operator()(const Tensor& x) const {
    return ggml_order ? ops::matmul_ggml_order(x, w, b.defined() ? &b : nullptr) : ops::matmul(x, w, b.defined() ? &b : nullptr);
  }
};

inline Linear load_linear_layer(const ConnectorConfig& c, const io::TensorSource& s, const std::string& w_name,
                                const std::string& b_name, int64_t rows, int64_t cols) {
  const io::TensorReader r{s, "connector"};
  return Linear{ops::PreparedWeight(r.get(w_name, {rows, cols}, true)), r.get(b_name, {rows}, false), c.ggml_order};
}

// Name of linear layer `i` of a sequential projector ("mm.0", "multi_modal_projector.linear_1", ...).
inline std::string layer_name(Layout layout, int seq_index, int hf_index, const char* what) {
  switch (layout) {
    case Layout::Gguf: return "mm." + std::to_string(seq_index) + "." + what;
    case Layout::HfLlava: return "multi_modal_projector.linear_" + std::to_string(hf_index) + "." + what;
    case Layout::LlavaOriginal: return "model.mm_projector." + std::to_string(seq_index) + "." + what;
  }
  return "";
}

}  // namespace ocellus::connect::detail
