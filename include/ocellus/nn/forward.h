#pragma once
// One model definition for inference and training. The blocks (lm/decoder_block.h,
// vision/encoder_block.h, the connectors in connect/) are templates over a forward context F
// that says what a value, a matrix and a vector are and how each op runs:
//   nn::Infer  values are Tensors; matrices are prepared (packed, quantized) weights; nothing is
//              recorded; llama.cpp's summation orders and f16 tables where the model's file asks.
//   nn::Train  values are autograd variables (ag::Var) recorded on the tape; matrices and vectors
//              are f32 parameters; LoRA adapters beside the matrices that have one.
// A block is written once against F's ops; the state that only one of them has (the KV cache,
// the tape) stays outside the block, with the caller.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ocellus/autograd/autograd.h"
#include "ocellus/core/tensor.h"
#include "ocellus/ops/attention.h"
#include "ocellus/ops/elementwise.h"
#include "ocellus/ops/feature_map.h"
#include "ocellus/ops/grid.h"
#include "ocellus/ops/matmul.h"
#include "ocellus/ops/rope.h"

namespace ocellus::io {
struct TensorSource;
}

namespace ocellus::nn {

struct Infer {
  using V = Tensor;                // activations
  using W = ops::PreparedWeight;   // matrices [out, in], any dtype
  using P = Tensor;                // vectors and small tensors (norm weights, biases), f32; undefined: absent

  // llama.cpp's CPU graph, where a GGUF file's model is computed as llama.cpp computes it:
  bool ggml_matmul = false;        // f32 products summed in its order
  bool ggml_norm = false;          // LayerNorm in its order
  bool ggml_attention = false;     // unmasked attention in its order (the towers)
  bool act_f16 = false;            // activations through its f16 tables

  static bool has(const Tensor& p) { return p.defined(); }
  static bool has(const ops::PreparedWeight& w) { return w.tensor().defined(); }
  static const Shape& shape(const Tensor& x) { return x.shape(); }
  static Tensor value(const Tensor& x) { return x; }
  static W matrix(const Tensor& p) { return ops::PreparedWeight(p); }  // a table used as a matrix (tied output)
  static Tensor constant(const Tensor& t) { return t; }  // an input that takes no gradient

  Tensor linear(const Tensor& x, const W& w, const P& b) const { return ops::linear(x, w, b, ggml_matmul); }
  // Several products of one input (q, k, v; gate, up): one pass over all their tiles at decode.
  std::vector<Tensor> linear_many(const Tensor& x, const std::vector<std::pair<const W*, P>>& layers) const {
    return ops::linear_many(x, layers, ggml_matmul);
  }
  Tensor swiglu_ffn(const Tensor& x, const W& gate, const W& up, const P& up_b) const;
  Tensor layer_norm(const Tensor& x, const P& w, const P& b, float eps) const;
  Tensor rms_norm(const Tensor& x, const P& w, float eps) const;
  Tensor act(ops::Activation a, const Tensor& x) const { return act_f16 ? ops::activate_ggml_f16(a, x) : ops::activate(a, x); }
  Tensor add(const Tensor& a, const Tensor& b) const { return ops::add(a, b); }
  Tensor scale(const Tensor& a, float s) const { return ops::scale(a, s); }
  Tensor reshape(const Tensor& x, const Shape& s) const { return x.contiguous().reshape(s); }
  Tensor slice(const Tensor& x, int dim, int64_t a, int64_t b) const { return x.slice(dim, a, b).contiguous(); }
  Tensor concat(const std::vector<Tensor>& xs, int dim) const;
  Tensor rows(const Tensor& x, const std::vector<int32_t>& ids) const;  // a gather of rows
  Tensor rope(const Tensor& x, const std::vector<int32_t>& pos, const ops::RopeParams& p) const { return ops::rope(x, pos, p); }
  // Attention within each segment [starts[i], starts[i+1]) of the stacked rows (bidirectional
  // unless causal; masks: none, or one additive [len, len] per segment, undefined for none).
  Tensor attention_segments(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                            const std::vector<int64_t>& starts, bool causal = false,
                            const std::vector<Tensor>& masks = {}) const;
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const ops::AttentionParams& p) const {
    return ops::attention(q, k, v, p);
  }
  // A square grid of rows (ops/grid.h): 2x2 mean pool; depthwise 3x3 convolution (b may be absent).
  Tensor avg_pool2(const Tensor& x) const { return ops::avg_pool2(x); }
  Tensor depthwise3x3(const Tensor& x, const P& w, const P& b) const { return ops::depthwise3x3(x, w, b.defined() ? &b : nullptr); }
  // An image [3, S, S] into rows of patches [n_patches, d] (w [d, 3, p, p]; b may be absent).
  Tensor patch_embed(const Tensor& image, const P& w, const P& b, int64_t patch) const;
  // Feature maps [B, H, W, C] (ops/feature_map.h): kernels [O, k, k, C] are f32 vectors-and-small-tensors (P).
  Tensor conv2d(const Tensor& x, const P& w, const P& b, int64_t stride, int64_t pad) const {
    return ops::conv2d(x, w, b.defined() ? &b : nullptr, stride, pad);
  }
  Tensor group_norm(const Tensor& x, const P& w, const P& b, int64_t groups, float eps) const {
    return ops::group_norm(x, w, b, groups, eps);
  }
  Tensor upsample2x(const Tensor& x) const { return ops::upsample2x(x); }
};

struct Train {
  using V = ag::Var;
  using W = ag::Var;
  using P = ag::Var;

  // LoRA: y = x Wᵀ + scale (x Aᵀ) Bᵀ beside the weights listed.
  struct Adapter {
    const ag::Node* weight;
    ag::Var a, b;  // [rank, in], [out, rank]
    float scale;
  };
  const std::vector<Adapter>* adapters = nullptr;

  static bool has(const ag::Var& p) { return p != nullptr; }
  static const Shape& shape(const ag::Var& x) { return x->value.shape(); }
  static const Tensor& value(const ag::Var& x) { return x->value; }
  static W matrix(const ag::Var& p) { return p; }
  static ag::Var constant(const Tensor& t) { return ag::constant(t); }
  const Adapter* adapter(const ag::Var& w) const;

  ag::Var linear(const ag::Var& x, const W& w, const P& b) const;
  // One GEMM against the weights stacked, unless an adapter sits on one or only some have biases.
  std::vector<ag::Var> linear_many(const ag::Var& x, const std::vector<std::pair<const W*, P>>& layers) const;
  ag::Var swiglu_ffn(const ag::Var& x, const W& gate, const W& up, const P& up_b) const;
  ag::Var layer_norm(const ag::Var& x, const P& w, const P& b, float eps) const { return ag::layer_norm(x, w, b, eps); }
  ag::Var rms_norm(const ag::Var& x, const P& w, float eps) const { return ag::rms_norm(x, w, eps); }
  ag::Var act(ops::Activation a, const ag::Var& x) const { return ag::activate(a, x); }
  ag::Var add(const ag::Var& a, const ag::Var& b) const { return ag::add(a, b); }
  ag::Var scale(const ag::Var& a, float s) const { return ag::scale(a, s); }
  ag::Var reshape(const ag::Var& x, const Shape& s) const { return ag::reshape(x, s); }
  ag::Var slice(const ag::Var& x, int dim, int64_t a, int64_t b) const { return ag::slice(x, dim, a, b); }
  ag::Var concat(const std::vector<ag::Var>& xs, int dim) const { return xs.size() == 1 ? xs[0] : ag::concat(xs, dim); }
  ag::Var rows(const ag::Var& x, const std::vector<int32_t>& ids) const { return ag::embedding(x, ids); }
  ag::Var rope(const ag::Var& x, const std::vector<int32_t>& pos, const ops::RopeParams& p) const { return ag::rope(x, pos, p); }
  ag::Var attention_segments(const ag::Var& q, const ag::Var& k, const ag::Var& v, float scale,
                             const std::vector<int64_t>& starts, bool causal = false,
                             const std::vector<Tensor>& masks = {}) const;
  ag::Var attention(const ag::Var& q, const ag::Var& k, const ag::Var& v, const ops::AttentionParams& p) const {
    return ag::attention(q, k, v, p);
  }
  ag::Var avg_pool2(const ag::Var& x) const { return ag::avg_pool2(x); }
  ag::Var depthwise3x3(const ag::Var& x, const P& w, const P& b) const { return ag::depthwise3x3(x, w, b); }
  ag::Var patch_embed(const Tensor& image, const P& w, const P& b, int64_t patch) const {
    return ag::patch_embed(image, w, b, patch);
  }
  ag::Var conv2d(const ag::Var& x, const P& w, const P& b, int64_t stride, int64_t pad) const {
    return ag::conv2d(x, w, b, stride, pad);
  }
  ag::Var group_norm(const ag::Var& x, const P& w, const P& b, int64_t groups, float eps) const {
    return ag::group_norm(x, w, b, groups, eps);
  }
  ag::Var upsample2x(const ag::Var& x) const { return ag::upsample2x(x); }
};

// Reads a model's weights for a context: matrices and vectors by name, shapes checked. The
// inference maker prepares matrices from a file (mapped or converted); the training maker makes
// f32 parameters (and records their names for checkpoints).
template <class F>
struct Maker {
  std::function<typename F::W(const std::string& name, const Shape& shape)> matrix;
  // required false: an absent tensor gives an empty P.
  std::function<typename F::P(const std::string& name, const Shape& shape, bool required)> tensor;
  std::function<bool(const std::string& name)> has;
  std::function<Shape(const std::string& name)> shape;  // of a tensor that is there (sizes read from weights)
};

// A layer's weight of `shape` and its bias [shape[0]], both required, as prefix.weight and
// prefix.bias (read in that order).
template <class F>
std::pair<typename F::P, typename F::P> weight_and_bias(const Maker<F>& mk, const std::string& prefix, const Shape& shape) {
  return {mk.tensor(prefix + ".weight", shape, true), mk.tensor(prefix + ".bias", {shape[0]}, true)};
}

// Inference weights from a file (GGUF or safetensors): matrices prepared as they are stored,
// vectors f32. Errors start with `what` and name the file and the tensor.
Maker<Infer> file_maker(const io::TensorSource& s, const std::string& what);
// file_maker with every tensor (kernels, markers, embeddings; not the matrices, which compute at
// any dtype) read as f32: for the image models, whose convolutions run in f32 and whose files may
// store them at 16 bits (a recipe's export_dtype).
Maker<Infer> f32_file_maker(const io::TensorSource& s, const std::string& what);
// Training weights from a file: each tensor read an f32 parameter under the name asked, appended
// to *params, its name in the file recorded in *file_names (export writes it back there); an
// absent optional tensor is null.
Maker<Train> param_maker(const io::TensorSource& s, const std::string& what, std::vector<ag::Var>* params,
                         std::map<std::string, std::string>* file_names);

// A model's tensors read from s under one file layout, named as another names them, by its loader
// (the names are written once, there): load(mk, false) reads under the first layout, its calls
// recorded; load(mk, true) asks under the second and is answered call by call, each tensor coming
// back under the name and in the shape asked there. Errors start with `what`.
std::vector<std::pair<std::string, Tensor>> tensors_as(const io::TensorSource& s, const std::string& what,
                                                       const std::function<void(const Maker<Infer>&, bool second)>& load);

// New f32 parameters for training from scratch, each appended to params under its name:
// matrices and kernels uniform in ±1/sqrt(fan-in) (PyTorch's default for Linear and Conv2d
// weights), 1-D norm weights (a name with "norm" and ending ".weight") 1, biases and other
// vectors 0. Seeded: the same names asked in the same order get the same values.
Maker<Train> new_param_maker(std::vector<ag::Var>& params, uint64_t seed);

}  // namespace ocellus::nn
