#pragma once
// Reverse-mode autograd: a tape of op records. Each op below computes its forward with the ops/
// kernels and, when gradients are on and an input needs one, records a closure that calls the
// op's backward (ops/*_backward, which accumulate). Tape::backward runs the records in reverse
// from a scalar loss. Leaves that are frozen (requires_grad false) never get a gradient, and
// nothing upstream of only-frozen inputs is recorded. NoGrad turns recording off in a scope.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ocellus/core/tensor.h"
#include "ocellus/ops/attention.h"
#include "ocellus/ops/elementwise.h"
#include "ocellus/ops/rope.h"

namespace ocellus::ag {

struct Node {
  Tensor value;         // f32
  Tensor grad;          // same shape, f32; undefined until a gradient arrives
  bool requires_grad = false;
  std::string name;     // parameters: their checkpoint name
  // The gradient tensor, allocated as zeros on first use; null when no gradient is wanted.
  Tensor* grad_ptr();
};
using Var = std::shared_ptr<Node>;

Var leaf(Tensor value, bool requires_grad, std::string name = {});  // a parameter or an input
inline Var constant(Tensor value) { return leaf(std::move(value), false); }
// A model's parameters: the one of this name (throws, starting with `what`, when none has it), and
// every one's value under its name.
Var find_param(const std::vector<Var>& params, const std::string& name, const char* what);
std::vector<std::pair<std::string, Tensor>> named_values(const std::vector<Var>& params);

// Ops record (per thread) unless a NoGrad is alive: off for its scope.
class NoGrad {
 public:
  NoGrad();
  ~NoGrad();
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool prev_;
};

// The records of the ops run since the last clear (per thread).
class Tape {
 public:
  static Tape& current();
  void record(const char* op, std::function<void()> backward) {
    if (profiling_) note_forward(op);
    records_.push_back({op, std::move(backward)});
  }
  // d loss / d leaf into each leaf's grad (accumulating); loss must be a scalar [1]. Clears the tape.
  void backward(const Var& loss);
  void clear() { records_.clear(); }
  size_t size() const { return records_.size(); }
  // Seconds spent in each op's backward ("backward <op>") since profiling was turned on, and in
  // each op's forward ("forward <op>": the time from the previous op's recording, or from
  // mark(), to this one's, so glue code between ops counts towards the next op) — for finding
  // hot spots.
  void set_profiling(bool on) { profiling_ = on, profile_.clear(), mark(); }
  void mark() { last_ = std::chrono::steady_clock::now(); }
  const std::vector<std::pair<std::string, double>>& profile() const { return profile_; }

 private:
  struct Record {
    const char* op;
    std::function<void()> backward;
  };
  std::vector<Record> records_;
  void note_forward(const char* op);
  void add_time(const std::string& key, double seconds);
  bool profiling_ = false;
  std::vector<std::pair<std::string, double>> profile_;
  std::chrono::steady_clock::time_point last_;
};

// ---- ops (f32 values) -----------------------------------------------------------------------
Var matmul(const Var& x, const Var& w, const Var& b = nullptr);  // x [.., k] · w[m, k]ᵀ + b[m]
Var add(const Var& a, const Var& b);                             // broadcasting as ops::add
Var mul(const Var& a, const Var& b);
Var scale(const Var& a, float s);
Var activate(ops::Activation f, const Var& x);
Var swiglu(const Var& gate, const Var& up);
// swiglu(x · gate_wᵀ, x · up_wᵀ) as one GEMM against both weights stacked (x [n, k]; same values
// as the three ops, the input gradient from one GEMM).
Var swiglu_linear(const Var& x, const Var& gate_w, const Var& up_w);
// x · wᵢᵀ + bᵢ for each weight (x [n, k]; bs empty or one per weight) as one GEMM against the
// weights stacked, split into one output per weight (attention's q, k, v projections).
std::vector<Var> linear_split(const Var& x, const std::vector<Var>& ws, const std::vector<Var>& bs = {});
Var layer_norm(const Var& x, const Var& w, const Var& b, float eps);  // w, b may be null
Var rms_norm(const Var& x, const Var& w, float eps);
Var embedding(const Var& table, const std::vector<int32_t>& ids);
Var rope(const Var& x, const std::vector<int32_t>& pos, const ops::RopeParams& p);  // x [n, h, d]
// q [n_q, H, d], k / v [n_kv, Hkv, d] -> [n_q, H, d]; p.mask additive [n_q, n_kv] (kept for the
// backward); p.f16_probs unsupported here.
Var attention(const Var& q, const Var& k, const Var& v, const ops::AttentionParams& p);
// Stacked sequences: rows [starts[i], starts[i+1]) of q, k, v attend only within themselves
// (no copies: each sequence runs on views of the stacked tensors); masks: none, or one additive
// mask per sequence [len, len] (undefined: none for that one).
Var attention_segments(const Var& q, const Var& k, const Var& v, const ops::AttentionParams& p,
                       const std::vector<int64_t>& starts, const std::vector<Tensor>& masks = {});
Var reshape(const Var& x, const Shape& shape);
Var concat(const std::vector<Var>& xs, int dim);
Var slice(const Var& x, int dim, int64_t start, int64_t end);
// Patch embedding of a constant image [C, H, W] (conv2d with stride = kernel = patch): [n_patch, D].
Var patch_embed(const Tensor& image, const Var& w, const Var& b, int64_t patch);
// A square grid of rows x [g·g, d] (ops/grid.h): the mean of each 2x2 block -> [(g/2)², d]; a
// depthwise 3x3 convolution (padding 1) with kernel w (d rows of 9 taps) and bias b (may be null).
Var avg_pool2(const Var& x);
Var depthwise3x3(const Var& x, const Var& w, const Var& b);
// The mean of each segment's rows: x [n, d], rows [starts[i], starts[i+1]) -> row i of [S, d].
Var segment_mean(const Var& x, const std::vector<int64_t>& starts);
// SigLIP's pairwise sigmoid loss (Zhai et al. 2023) of a batch of n matching pairs: image and
// text embeddings [n, e] are L2-normalized, logits_ij = exp(log_scale) <img_i, txt_j> + bias,
// labels +1 on the diagonal and -1 elsewhere; loss = -(1/n) sum_ij log sigmoid(label_ij logits_ij).
// log_scale and bias are [1]. A scalar [1].
Var sigmoid_pair_loss(const Var& img, const Var& txt, const Var& log_scale, const Var& bias);
// Feature maps [B, H, W, C] (ops/feature_map.h): a convolution with kernel w [O, k, k, C] and
// bias b [O] (may be null), group norm with w, b [C], nearest up-sampling by 2.
Var conv2d(const Var& x, const Var& w, const Var& b, int64_t stride, int64_t pad);
Var group_norm(const Var& x, const Var& w, const Var& b, int64_t groups, float eps);
Var upsample2x(const Var& x);
// mean((pred - target)²), a scalar [1] (ops/diffusion.h).
Var mse(const Var& pred, const Var& target);
// A VAE posterior's reparameterized sample mean + exp(logvar / 2) · noise, and its KL to
// N(0, 1) averaged over the elements, a scalar [1] (ops/diffusion.h).
Var gaussian_sample(const Var& mean, const Var& logvar, const Tensor& noise);
Var gaussian_kl(const Var& mean, const Var& logvar);
// Mean cross-entropy over rows whose target is not ignore_index; a scalar [1].
Var cross_entropy(const Var& logits, const std::vector<int32_t>& targets, int32_t ignore_index = -100);

}  // namespace ocellus::ag
