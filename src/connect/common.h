#pragma once
// Helpers shared by the connector files, written once for both forward contexts (nn/forward.h).
#include <algorithm>
#include <string>

#include "ocellus/connect/connector.h"
#include "ocellus/core/error.h"

namespace ocellus::connect::detail {

// A linear layer: weight [rows, cols], optional bias [rows].
template <class F>
struct LinearOf {
  typename F::W w;
  typename F::P b;
  typename F::V operator()(const F& f, const typename F::V& x) const { return f.linear(x, w, b); }
};
template <class F>
LinearOf<F> load_linear_of(const nn::Maker<F>& mk, const std::string& w_name, const std::string& b_name, int64_t rows,
                           int64_t cols) {
  return {mk.matrix(w_name, {rows, cols}), mk.tensor(b_name, {rows}, false)};
}

// A LayerNorm [d] (bias optional).
template <class F>
struct NormOf {
  typename F::P w, b;
  float eps = 1e-5f;
  typename F::V operator()(const F& f, const typename F::V& x) const { return f.layer_norm(x, w, b, eps); }
};
template <class F>
NormOf<F> load_norm_of(const nn::Maker<F>& mk, const ConnectorConfig& c, const std::string& prefix, int64_t d) {
  return {mk.tensor(prefix + "weight", {d}, true), mk.tensor(prefix + "bias", {d}, false), c.norm_eps};
}

// The GELU of a connector: for GGUF files llama.cpp's f16 table of the tanh form (the context's
// act_f16), else the configured form.
inline ops::Activation gelu_kind(const ConnectorConfig& c) { return c.act_ggml_f16 ? ops::Activation::GeluTanh : c.act; }
template <class F>
typename F::V gelu_of(const F& f, const ConnectorConfig& c, const typename F::V& x) {
  return f.act(gelu_kind(c), x);
}

// The attention heads of a connector of width d: the configured count, else 64-wide heads (at
// least one).
inline int64_t n_head(const ConnectorConfig& c, int64_t d) {
  const int64_t n = c.n_head > 0 ? c.n_head : std::max<int64_t>(1, d / 64);
  OCELLUS_CHECK(d % n == 0, "connector: head count ", n, " does not divide its width ", d);
  return n;
}

// A small tensor read through a maker, as f32: inference makers keep the stored dtype of what is
// not a vector; training parameters are f32 already.
inline Tensor as_f32(const Tensor& t) { return t.defined() && t.dtype() != DType::F32 ? t.to(DType::F32) : t; }
inline ag::Var as_f32(const ag::Var& v) { return v; }

// Where a layout keeps the connector's own tensors: name = prefix + local name.
inline std::string prefix(Layout layout) {
  switch (layout) {
    case Layout::Gguf: return "mm.";
    case Layout::HfLlava: return "multi_modal_projector.";
    case Layout::LlavaOriginal: return "model.mm_projector.";
  }
  return "";
}

// Name of linear layer `i` of a sequential projector ("mm.0", "multi_modal_projector.linear_1", ...).
inline std::string layer_name(Layout layout, int seq_index, int hf_index, const char* what) {
  const std::string layer = layout == Layout::HfLlava ? "linear_" + std::to_string(hf_index) : std::to_string(seq_index);
  return prefix(layout) + layer + "." + what;
}

// The last weight matrix of each type, whose rows are the connector's output width (one
// definition: the loaders read it under this name, connector_output_width reads its rows).
std::string linear_out_weight(Layout layout);
std::string mlp2x_gelu_out_weight(Layout layout);
std::string mlp_norm_out_weight(Layout layout);
std::string ldpv2_out_weight(Layout layout);
std::string attn_blocks_out_weight(Layout layout);
std::string resampler_out_weight(Layout layout);

}  // namespace ocellus::connect::detail

// A type's loader instantiated for both forward contexts.
#define OCELLUS_CONNECTOR_INSTANTIATE(name)                                                                         \
  template std::unique_ptr<ConnectorOf<nn::Infer>> name(const ConnectorConfig&, const nn::Maker<nn::Infer>&, Layout); \
  template std::unique_ptr<ConnectorOf<nn::Train>> name(const ConnectorConfig&, const nn::Maker<nn::Train>&, Layout);
