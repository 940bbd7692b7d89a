#pragma once
// Helpers shared by the connector files.
#include <algorithm>
#include <cmath>
#include <string>

#include "ocellus/connect/connector.h"
#include "ocellus/core/error.h"
#include "ocellus/ops/attention.h"
#include "ocellus/ops/matmul.h"
#include "ocellus/ops/norm.h"

namespace ocellus::connect::detail {

// ---- written once for both forward contexts (nn/forward.h) ----------------------------------

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
template <class F>
typename F::V gelu_of(const F& f, const ConnectorConfig& c, const typename F::V& x) {
  return f.act(c.act_ggml_f16 ? ops::Activation::GeluTanh : c.act, x);
}

// ---- inference-only helpers of the types not yet written over both contexts -----------------

// A linear layer's weight [rows, cols] (any dtype, prepared) and optional f32 bias [rows].
struct Linear {
  ops::PreparedWeight w;
  Tensor b;
  bool ggml_order = false;
  Tensor operator()(const Tensor& x) const { return ops::linear(x, w, b, ggml_order); }
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

// The last weight matrix of each type, whose rows are the connector's output width (one
// definition: the loaders read it under this name, connector_output_width reads its rows).
std::string linear_out_weight(Layout layout);
std::string mlp2x_gelu_out_weight(Layout layout);
std::string mlp_norm_out_weight(Layout layout);
std::string ldpv2_out_weight(Layout layout);
std::string attn_blocks_out_weight(Layout layout);
std::string resampler_out_weight(Layout layout);

// A LayerNorm's weight and bias [d] (bias optional).
struct Norm {
  Tensor w, b;
  bool ggml_order = false;
  float eps = 1e-5f;
  Tensor operator()(const Tensor& x) const { return ops::layer_norm(x, w, b, eps, ggml_order); }
};

inline Norm load_norm(const ConnectorConfig& c, const io::TensorSource& s, const std::string& prefix, int64_t d) {
  const io::TensorReader r{s, "connector"};
  return Norm{r.get(prefix + "weight", {d}, true), r.get(prefix + "bias", {d}, false), c.ggml_order, c.norm_eps};
}

// The GELU of a connector: llama.cpp's f16 table for GGUF files, else the configured form.
inline Tensor gelu(const ConnectorConfig& c, const Tensor& x) {
  return c.act_ggml_f16 ? ops::activate_ggml_f16(ops::Activation::GeluTanh, x) : ops::activate(c.act, x);
}

// Where a layout keeps the connector's own tensors: name = prefix + local name.
inline std::string prefix(Layout layout) {
  switch (layout) {
    case Layout::Gguf: return "mm.";
    case Layout::HfLlava: return "multi_modal_projector.";
    case Layout::LlavaOriginal: return "model.mm_projector.";
  }
  return "";
}

// Multi-head attention with its four projections (biases optional), width d.
struct Mha {
  Linear q, k, v, o;
  int64_t n_head = 1;
  Tensor operator()(const Tensor& xq, const Tensor& xkv) const {
    const int64_t d = q.w.tensor().dim(0), hd = d / n_head;
    const Tensor Q = q(xq).reshape({xq.dim(0), n_head, hd});
    const Tensor K = k(xkv).reshape({xkv.dim(0), n_head, hd}), V = v(xkv).reshape({xkv.dim(0), n_head, hd});
    ops::AttentionParams p;
    p.scale = 1.0f / std::sqrt(float(hd));
    return o(ops::attention(Q, K, V, p).reshape({xq.dim(0), d}));
  }
};

inline Mha load_mha(const ConnectorConfig& c, const io::TensorSource& s, const std::string& p, int64_t d) {
  const int64_t n_head = c.n_head > 0 ? c.n_head : std::max<int64_t>(1, d / 64);  // default: 64-wide heads
  OCELLUS_CHECK(d % n_head == 0, s.path, ": connector head count ", n_head, " does not divide its width ", d);
  return Mha{load_linear_layer(c, s, p + "q.weight", p + "q.bias", d, d), load_linear_layer(c, s, p + "k.weight", p + "k.bias", d, d),
             load_linear_layer(c, s, p + "v.weight", p + "v.bias", d, d), load_linear_layer(c, s, p + "out.weight", p + "out.bias", d, d),
             n_head};
}

}  // namespace ocellus::connect::detail
