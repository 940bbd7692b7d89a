// The two forward contexts' ops that are more than one call (see nn/forward.h).
#include "ocellus/nn/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>

#include "ocellus/core/error.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/ops/embed.h"
#include "ocellus/ops/norm.h"
#include "ocellus/ops/shape.h"

namespace ocellus::nn {

// ---- inference ------------------------------------------------------------------------------

Tensor Infer::swiglu_ffn(const Tensor& x, const W& gate, const W& up, const P& up_b) const {
  const std::vector<Tensor> gu = linear_many(x, {{&gate, Tensor()}, {&up, up_b}});
  return ops::swiglu(gu[0], gu[1]);
}

Tensor Infer::layer_norm(const Tensor& x, const P& w, const P& b, float eps) const {
  return ops::layer_norm(x, w, b, eps, ggml_norm);
}

Tensor Infer::rms_norm(const Tensor& x, const P& w, float eps) const {
  return ops::rms_norm(x, w.defined() ? &w : nullptr, eps);
}

Tensor Infer::concat(const std::vector<Tensor>& xs, int dim) const { return xs.size() == 1 ? xs[0] : ops::concat(xs, dim); }

Tensor Infer::patch_embed(const Tensor& image, const P& w, const P& b, int64_t patch) const {
  const Tensor* bias = b.defined() ? &b : nullptr;
  return ggml_matmul ? ops::patch_embed_ggml_order(image, w, bias, patch) : ops::patch_embed(image, w, bias, patch);
}

Tensor Infer::rows(const Tensor& x, const std::vector<int32_t>& ids) const { return ops::embedding(x, ids); }

Tensor Infer::attention_segments(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                                 const std::vector<int64_t>& starts, bool causal, const std::vector<Tensor>& masks) const {
  const int64_t n = q.dim(0), H = q.dim(1), hd = q.dim(2);
  OCELLUS_CHECK(starts.size() >= 2 && starts.front() == 0 && starts.back() == n, "attention: segments do not cover ", n, " rows");
  OCELLUS_CHECK(masks.empty() || masks.size() + 1 == starts.size(), "attention: ", masks.size(), " masks for ", starts.size() - 1,
                " segments");
  ops::AttentionParams ap;
  ap.scale = scale;
  ap.causal = causal;
  Tensor out = Tensor::empty({n, H, hd});
  for (size_t s = 0; s + 1 < starts.size(); ++s) {
    const int64_t a = starts[s], b = starts[s + 1];
    const Tensor qs = q.slice(0, a, b), ks = k.slice(0, a, b), vs = v.slice(0, a, b);
    ap.mask = !masks.empty() && masks[s].defined() ? &masks[s] : nullptr;
    const Tensor o = ggml_attention && !causal && !ap.mask ? ops::attention_ggml_order(qs, ks, vs, scale) : ops::attention(qs, ks, vs, ap);
    std::memcpy(out.data<float>() + a * H * hd, o.contiguous().data<float>(), size_t((b - a) * H * hd) * sizeof(float));
  }
  return out;
}

namespace {
// Whether two shapes are equal once their dimensions of 1 are dropped.
bool same_but_ones(const Shape& a, const Shape& b) {
  std::vector<int64_t> x, y;
  for (int i = 0; i < a.ndim; ++i)
    if (a[i] != 1) x.push_back(a[i]);
  for (int i = 0; i < b.ndim; ++i)
    if (b[i] != 1) y.push_back(b[i]);
  return x == y;
}
}  // namespace

Maker<Infer> file_maker(const io::TensorSource& s, const std::string& what) {
  Maker<Infer> m;
  m.matrix = [s, what](const std::string& name, const Shape& shape) {
    return ops::PreparedWeight(io::TensorReader{s, what}.get(name, shape, true));
  };
  m.tensor = [s, what](const std::string& name, const Shape& shape, bool required) {
    // A stored shape that differs from the asked one only in dimensions of 1 holds the same
    // data in the same order (llama.cpp's converter squeezes them: LDPv2's [d, 1, 3, 3] kernel
    // is [d, 3, 3] in its files): read as asked.
    if (!name.empty() && s.has(name)) {
      const Shape stored = s.get(name).shape();
      if (stored != shape && same_but_ones(stored, shape))
        return io::TensorReader{s, what}.get(name, stored, required).contiguous().reshape(shape);
    }
    // Small tensors (norms, biases, class embeddings) read every forward are copied out of the
    // mapping, so it can leave resident memory after load (MappedFile::drop_resident): each
    // read of a mapped page brings its neighbours back (1.7 MB per matrix of a CLIP-ViT-L file
    // after one encode, measured). Large tables (token embeddings) stay mapped: rows are read.
    const Tensor t = io::TensorReader{s, what}.get(name, shape, required);
    return t.defined() && t.is_mapped() && t.nbytes() <= (size_t(1) << 20) ? t.clone() : t;
  };
  m.has = [s](const std::string& name) { return !name.empty() && s.has(name); };
  m.shape = [s, what](const std::string& name) {
    OCELLUS_CHECK(!name.empty() && s.has(name), what, ": ", s.path, ": missing tensor '", name, "'");
    return s.get(name).shape();
  };
  return m;
}

Maker<Infer> f32_file_maker(const io::TensorSource& s, const std::string& what) {
  Maker<Infer> m = file_maker(s, what);
  m.tensor = [t = m.tensor](const std::string& name, const Shape& shape, bool required) {
    const Tensor x = t(name, shape, required);
    return x.defined() && x.dtype() != DType::F32 ? x.to(DType::F32) : x;
  };
  return m;
}

Maker<Train> param_maker(const io::TensorSource& s, const std::string& what, std::vector<ag::Var>* params,
                         std::map<std::string, std::string>* file_names) {
  const Maker<Infer> file = file_maker(s, what);
  Maker<Train> m;
  m.tensor = [s, what, params, file_names](const std::string& name, const Shape& shape, bool required) -> ag::Var {
    const Tensor t = io::TensorReader{s, what}.get(name, shape, required);
    if (!t.defined()) return nullptr;
    params->push_back(ag::leaf(t.to(DType::F32).contiguous().clone(), true, name));
    (*file_names)[name] = s.file_name(name);
    return params->back();
  };
  m.matrix = [t = m.tensor](const std::string& name, const Shape& shape) { return t(name, shape, true); };
  m.has = file.has, m.shape = file.shape;
  return m;
}

// ---- training -------------------------------------------------------------------------------

Maker<Train> new_param_maker(std::vector<ag::Var>& params, uint64_t seed) {
  auto rng = std::make_shared<std::mt19937_64>(seed);
  Maker<Train> m;
  m.tensor = [&params, rng](const std::string& name, const Shape& shape, bool) {
    Tensor t = Tensor::zeros(shape);
    if (shape.ndim >= 2) {
      const float bound = 1.0f / std::sqrt(float(shape.numel() / shape[0]));
      std::uniform_real_distribution<float> u(-bound, bound);
      for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(*rng);
    } else if (name.find("norm") != std::string::npos && name.ends_with(".weight")) {
      t = Tensor::full(shape, 1.0f);
    }
    params.push_back(ag::leaf(t, true, name));
    return params.back();
  };
  m.matrix = [t = m.tensor](const std::string& name, const Shape& shape) { return t(name, shape, true); };
  m.has = [](const std::string&) { return false; };
  return m;
}

const Train::Adapter* Train::adapter(const ag::Var& w) const {
  if (!adapters) return nullptr;
  for (const Adapter& a : *adapters)
    if (a.weight == w.get()) return &a;
  return nullptr;
}

ag::Var Train::linear(const ag::Var& x, const W& w, const P& b) const {
  ag::Var y = ag::matmul(x, w, b);
  if (const Adapter* a = adapter(w)) y = ag::add(y, ag::scale(ag::matmul(ag::matmul(x, a->a), a->b), a->scale));
  return y;
}

std::vector<ag::Var> Train::linear_many(const ag::Var& x, const std::vector<std::pair<const W*, P>>& layers) const {
  bool adapted = false;
  size_t biases = 0;
  for (const auto& [w, b] : layers) adapted = adapted || adapter(*w) != nullptr, biases += b != nullptr;
  std::vector<ag::Var> out;
  if (adapted || (biases != 0 && biases != layers.size())) {
    for (const auto& [w, b] : layers) out.push_back(linear(x, *w, b));
    return out;
  }
  std::vector<ag::Var> ws, bs;
  for (const auto& [w, b] : layers) {
    ws.push_back(*w);
    if (b) bs.push_back(b);
  }
  return ag::linear_split(x, ws, bs);
}

ag::Var Train::swiglu_ffn(const ag::Var& x, const W& gate, const W& up, const P& up_b) const {
  if (adapter(gate) || adapter(up) || up_b) return ag::swiglu(linear(x, gate, nullptr), linear(x, up, up_b));
  return ag::swiglu_linear(x, gate, up);  // gate and up as one GEMM
}

ag::Var Train::attention_segments(const ag::Var& q, const ag::Var& k, const ag::Var& v, float scale,
                                  const std::vector<int64_t>& starts, bool causal, const std::vector<Tensor>& masks) const {
  ops::AttentionParams ap;
  ap.scale = scale;
  ap.causal = causal;
  return starts.size() == 2 && masks.empty() ? ag::attention(q, k, v, ap) : ag::attention_segments(q, k, v, ap, starts, masks);
}

}  // namespace ocellus::nn
