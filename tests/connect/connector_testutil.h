#pragma once
// Random weights of every connector type, and tensor sources over them, for the connector tests.
#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ocellus/autograd/autograd.h"
#include "ocellus/connect/connector.h"
#include "ocellus/io/tensor_source.h"
#include "testutil.h"

namespace ocellus::test {

constexpr int64_t kConnDin = 24, kConnDout = 32, kConnGrid = 4;

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Local names (after LLaVA's model.mm_projector. prefix) and shapes of each type's tensors; d_in
// is the width the connector proper reads.
inline NamedTensors connector_weights(const std::string& type, uint32_t seed, int64_t d_in = kConnDin) {
  const int64_t d_out = kConnDout;
  NamedTensors w;
  auto add = [&](const std::string& n, const Shape& s, float scale) { w.emplace_back(n, randn(s, seed++, scale)); };
  auto lin = [&](const std::string& n, int64_t o, int64_t i, bool bias = true) {
    add(n + "weight", {o, i}, 1.0f / std::sqrt(float(i)));
    if (bias) add(n + "bias", {o}, 0.1f);
  };
  auto norm = [&](const std::string& n, int64_t d) { add(n + ".weight", {d}, 1.0f), add(n + ".bias", {d}, 0.1f); };
  if (type == "linear") lin("", d_out, d_in);
  if (type == "mlp2x_gelu") lin("0.", d_out, d_in), lin("2.", d_out, d_out);
  if (type == "mlp_norm") lin("0.", d_out, d_in), norm("1", d_out), lin("3.", d_out, d_out), norm("4", d_out);
  if (type == "ldpv2") {
    lin("mlp.0.", d_out, d_in), lin("mlp.2.", d_out, d_out);
    add("peg.peg.0.weight", {d_out, 1, 3, 3}, 0.3f), add("peg.peg.0.bias", {d_out}, 0.1f);
  }
  if (type == "attn_blocks") {
    for (int i = 0; i < 2; ++i) {
      const std::string b = "blocks." + std::to_string(i) + ".";
      norm(b + "ln1", d_in), norm(b + "ln2", d_in);
      for (const char* m : {"q", "k", "v", "out"}) lin(b + "attn." + m + ".", d_in, d_in);
      lin(b + "ffn_up.", 4 * d_in, d_in), lin(b + "ffn_down.", d_in, 4 * d_in);
    }
    lin("proj.", d_out, d_in);
  }
  if (type == "resampler") {
    add("query", {6, d_out}, 1.0f);
    lin("kv_proj.", d_out, d_in, false);
    norm("ln_q", d_out), norm("ln_kv", d_out), norm("ln_post", d_out);
    for (const char* m : {"q", "k", "v", "out"}) lin(std::string("attn.") + m + ".", d_out, d_out);
    lin("proj.", d_out, d_out);
  }
  return w;
}

// The weights under a prefix (LLaVA's "model.mm_projector.").
inline NamedTensors prefixed(const NamedTensors& w, const std::string& prefix) {
  NamedTensors out;
  for (const auto& [n, t] : w) out.emplace_back(prefix + n, t);
  return out;
}

// A source over named tensors (which must outlive it).
inline io::TensorSource named_source(const NamedTensors& w) {
  auto find = [&w](const std::string& n) -> const Tensor* {
    for (const auto& [name, t] : w)
      if (name == n) return &t;
    return nullptr;
  };
  return io::TensorSource{"<memory>", [find](const std::string& n) { return find(n) != nullptr; },
                          [find](const std::string& n) { return *find(n); }, {}};
}

// Training parameters (f32 copies, gradients wanted) of the tensors a loader reads, in its order.
inline nn::Maker<nn::Train> param_maker(const io::TensorSource& s, std::vector<std::pair<std::string, ag::Var>>* params) {
  nn::Maker<nn::Train> m;
  m.tensor = [s, params](const std::string& name, const Shape& shape, bool required) -> ag::Var {
    const Tensor t = io::TensorReader{s, "test"}.get(name, shape, required);
    if (!t.defined()) return nullptr;
    params->emplace_back(name, ag::leaf(t.to(DType::F32).contiguous().clone(), true, name));
    return params->back().second;
  };
  m.matrix = [t = m.tensor](const std::string& name, const Shape& shape) { return t(name, shape, true); };
  m.has = [s](const std::string& name) { return !name.empty() && s.has(name); };
  m.shape = [s](const std::string& name) { return s.get(name).shape(); };
  return m;
}

}  // namespace ocellus::test
