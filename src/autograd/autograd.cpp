#include "ocellus/autograd/autograd.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "ocellus/core/error.h"
#include "ocellus/core/threads.h"
#include "ocellus/ops/diffusion.h"
#include "ocellus/ops/embed.h"
#include "ocellus/ops/feature_map.h"
#include "ocellus/ops/grid.h"
#include "ocellus/ops/loss.h"
#include "ocellus/ops/matmul.h"
#include "ocellus/ops/norm.h"
#include "ocellus/ops/shape.h"

namespace ocellus::ag {

namespace {
thread_local bool g_grad = true;

// Whether an op on these inputs is recorded; its output then requires a gradient.
bool wants(std::initializer_list<const Var*> xs) {
  if (!g_grad) return false;
  for (const Var* x : xs)
    if (*x && (*x)->requires_grad) return true;
  return false;
}

Var result(Tensor v, bool requires_grad) {
  auto n = std::make_shared<Node>();
  n->value = std::move(v);
  n->requires_grad = requires_grad;
  return n;
}

Tensor* gp(const Var& v) { return v ? v->grad_ptr() : nullptr; }

// x's gradient slot for a backward that adds dy (of x's shape) to it; when no gradient has
// reached x yet, a copy of dy becomes it and nothing is left to add (nullptr): one pass, not a
// zeroing and an addition.
Tensor* slot_or_copy(const Var& x, const Tensor& dy) {
  if (x && x->requires_grad && !x->grad.defined() && x->value.shape() == dy.shape()) {
    x->grad = dy.contiguous().clone();
    return nullptr;
  }
  return gp(x);
}

// As slot_or_copy, but the first gradient to reach x shares dy's storage instead of copying it
// (no pass at all). Safe where dy is y's gradient and y's backward is its only reader: records
// run once, in reverse, so y's gradient is not read again once it is passed on, and a later
// addition into x's gradient may change it in place. At most one input of an op may share.
Tensor* slot_or_share(const Var& x, const Tensor& dy) {
  if (x && x->requires_grad && !x->grad.defined() && x->value.shape() == dy.shape()) {
    x->grad = dy.is_contiguous() ? dy : dy.contiguous();
    return nullptr;
  }
  return gp(x);
}
// x's gradient for a backward that can write it rather than add to it: when none has reached x
// yet, an uninitialized one is made and true returned (the backward must write every element).
bool claim_fresh(const Var& x) {
  if (!x->requires_grad || x->grad.defined()) return false;
  x->grad = Tensor::empty(x->value.shape());
  return true;
}

// A part of a stacked gradient into parameter p's: a copy when it is the first, else added.
void add_part(const Var& p, const Tensor& part) {
  if (!p->requires_grad) return;
  if (!p->grad.defined()) p->grad = part.contiguous().clone();
  else ops::add_backward(part, &p->grad, nullptr);
}

// The backward of y = x · wᵀ (+ b) where w (and b) stack the parameters ws (bs): rows
// [off[i], off[i + 1]) are part i. x's first gradient is written, not added to zeros.
void stacked_linear_backward(const Var& x, const Tensor& w, const Tensor& dy, const std::vector<Var>& ws,
                             const std::vector<Var>& bs, const std::vector<int64_t>& off) {
  const bool fresh = claim_fresh(x);
  bool wgrad = false, bgrad = false;
  for (size_t i = 0; i < ws.size(); ++i) wgrad = wgrad || ws[i]->requires_grad, bgrad = bgrad || (!bs.empty() && bs[i]->requires_grad);
  Tensor dw = wgrad ? Tensor::zeros(w.shape()) : Tensor(), db = bgrad ? Tensor::zeros({off.back()}) : Tensor();
  ops::matmul_backward(x->value, w, dy, x->requires_grad ? &x->grad : nullptr, wgrad ? &dw : nullptr, bgrad ? &db : nullptr,
                       fresh);
  for (size_t i = 0; i < ws.size(); ++i) {
    if (wgrad) add_part(ws[i], dw.slice(0, off[i], off[i + 1]));
    if (bgrad) add_part(bs[i], db.slice(0, off[i], off[i + 1]));
  }
}
}  // namespace

Tensor* Node::grad_ptr() {
  if (!requires_grad) return nullptr;
  if (!grad.defined()) grad = Tensor::zeros(value.shape());
  return &grad;
}

Var leaf(Tensor value, bool requires_grad, std::string name) {
  OCELLUS_CHECK(value.dtype() == DType::F32, "autograd: leaf '", name, "' must be f32, got ", dtype_name(value.dtype()));
  Var v = result(value.is_contiguous() ? std::move(value) : value.contiguous(), requires_grad);
  v->name = std::move(name);
  return v;
}

Var find_param(const std::vector<Var>& params, const std::string& name, const char* what) {
  for (const Var& p : params)
    if (p->name == name) return p;
  fail(what, ": no parameter '", name, "'");
}

std::vector<std::pair<std::string, Tensor>> named_values(const std::vector<Var>& params) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const Var& p : params) out.push_back({p->name, p->value});
  return out;
}

NoGrad::NoGrad() : prev_(g_grad) { g_grad = false; }
NoGrad::~NoGrad() { g_grad = prev_; }

Tape& Tape::current() {
  thread_local Tape t;
  return t;
}

void Tape::backward(const Var& loss) {
  OCELLUS_CHECK(loss && loss->value.numel() == 1, "autograd: backward needs a scalar loss");
  OCELLUS_CHECK(loss->requires_grad, "autograd: the loss depends on no trainable parameter");
  *loss->grad_ptr() = Tensor::full(loss->value.shape(), 1.0f);
  for (auto it = records_.rbegin(); it != records_.rend(); ++it) {
    if (!profiling_) {
      it->backward();
      continue;
    }
    const auto t0 = std::chrono::steady_clock::now();
    it->backward();
    add_time(std::string("backward ") + it->op, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  records_.clear();
}

void Tape::note_forward(const char* op) {
  const auto now = std::chrono::steady_clock::now();
  add_time(std::string("forward ") + op, std::chrono::duration<double>(now - last_).count());
  last_ = now;
}

void Tape::add_time(const std::string& key, double seconds) {
  auto e = std::find_if(profile_.begin(), profile_.end(), [&](const auto& p) { return p.first == key; });
  if (e == profile_.end()) profile_.push_back({key, seconds});
  else e->second += seconds;
}

// Each op: its forward's value as the output y; when recorded (r: an input wants a gradient), a
// closure that reads y's gradient dy (nothing to do when no gradient reached it) and accumulates
// into the inputs' gradients: back(dy), or back(dy, y) where the backward reads y's value too.
template <typename Back>
Var recorded(const char* op, bool r, Tensor value, Back back) {
  Var y = result(std::move(value), r);
  if (r)
    Tape::current().record(op, [back, o = std::weak_ptr<Node>(y)] {
      const Var y = o.lock();
      if (!y || !y->grad.defined()) return;
      if constexpr (std::is_invocable_v<Back, const Tensor&>) back(y->grad);
      else back(y->grad, *y);
    });
  return y;
}

Var matmul(const Var& x, const Var& w, const Var& b) {
  return recorded(__func__, wants({&x, &w, &b}), ops::matmul(x->value, w->value, b ? &b->value : nullptr),
                  [=](const Tensor& dy) {
                    // The first gradient to reach x is written, not added to zeros.
                    const bool fresh = claim_fresh(x);
                    ops::matmul_backward(x->value, w->value, dy, x->requires_grad ? &x->grad : nullptr, gp(w), gp(b), fresh);
                  });
}

Var add(const Var& a, const Var& b) {
  return recorded(__func__, wants({&a, &b}), ops::add(a->value, b->value), [=](const Tensor& dy) {
    Tensor* ga = slot_or_share(a, dy);
    Tensor* gb = slot_or_copy(b, dy);  // after a's: x + x adds the second dy to the first (in place)
    if (ga || gb) ops::add_backward(dy, ga, gb);
  });
}

Var mul(const Var& a, const Var& b) {
  return recorded(__func__, wants({&a, &b}), ops::mul(a->value, b->value),
                  [=](const Tensor& dy) { ops::mul_backward(a->value, b->value, dy, gp(a), gp(b)); });
}

Var scale(const Var& a, float s) {
  return recorded(__func__, wants({&a}), ops::scale(a->value, s), [=](const Tensor& dy) { ops::scale_backward(dy, s, gp(a)); });
}

Var activate(ops::Activation f, const Var& x) {
  return recorded(__func__, wants({&x}), ops::activate(f, x->value),
                  [=](const Tensor& dy) { ops::activate_backward(f, x->value, dy, gp(x)); });
}

Var swiglu(const Var& gate, const Var& up) {
  return recorded(__func__, wants({&gate, &up}), ops::swiglu(gate->value, up->value), [=](const Tensor& dy) {
    // The first gradients to reach gate and up (the usual case: each is one projection's
    // output) are written, not added to zeros.
    const bool fresh = gate->requires_grad && up->requires_grad && gate.get() != up.get() && !gate->grad.defined() &&
                       !up->grad.defined();
    if (fresh) gate->grad = Tensor::empty(gate->value.shape()), up->grad = Tensor::empty(up->value.shape());
    ops::swiglu_backward(gate->value, up->value, dy, gp(gate), gp(up), fresh);
  });
}

Var swiglu_linear(const Var& x, const Var& gate_w, const Var& up_w) {
  OCELLUS_CHECK(x->value.ndim() == 2, "autograd: swiglu_linear needs x as [n, k], got ", x->value.shape().str());
  OCELLUS_CHECK(gate_w->value.shape() == up_w->value.shape(), "autograd: swiglu_linear: gate ", gate_w->value.shape().str(),
                " and up ", up_w->value.shape().str(), " weights differ");
  const Tensor w = ops::concat({gate_w->value, up_w->value}, 0);  // [2f, k]: one GEMM for both
  const Tensor gu = ops::matmul(x->value, w);                       // [n, 2f]
  return recorded(__func__, wants({&x, &gate_w, &up_w}), ops::swiglu_packed(gu), [=](const Tensor& dy) {
    Tensor dgu = Tensor::empty(gu.shape());
    ops::swiglu_packed_backward(gu, dy, &dgu);
    const int64_t f = gate_w->value.dim(0);
    stacked_linear_backward(x, w, dgu, {gate_w, up_w}, {}, {0, f, 2 * f});
  });
}

std::vector<Var> linear_split(const Var& x, const std::vector<Var>& ws, const std::vector<Var>& bs) {
  OCELLUS_CHECK(x->value.ndim() == 2, "autograd: linear_split needs x as [n, k], got ", x->value.shape().str());
  OCELLUS_CHECK(!ws.empty() && (bs.empty() || bs.size() == ws.size()), "autograd: linear_split: ", ws.size(), " weights, ",
                bs.size(), " biases");
  bool r = wants({&x});
  std::vector<Tensor> wv, bv;
  std::vector<int64_t> off{0};
  for (size_t i = 0; i < ws.size(); ++i) {
    r = r || wants({&ws[i]}) || (!bs.empty() && wants({&bs[i]}));
    wv.push_back(ws[i]->value);
    if (!bs.empty()) bv.push_back(bs[i]->value);
    off.push_back(off.back() + ws[i]->value.dim(0));
  }
  const int64_t n = x->value.dim(0), M = off.back();
  const Tensor w = ops::concat(wv, 0), b = bs.empty() ? Tensor() : ops::concat(bv, 0);  // [M, k], [M]
  const Tensor y = ops::matmul(x->value, w, bs.empty() ? nullptr : &b);               // [n, M]: one GEMM
  // Column block i of a row-major [n, M] matrix <-> a contiguous [n, m_i] one.
  auto copy_block = [n](const float* src, int64_t lds, float* dst, int64_t ldd, int64_t m) {
    parallel_for(n, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) std::memcpy(dst + i * ldd, src + i * lds, size_t(m) * sizeof(float));
    });
  };
  std::vector<Var> out;
  for (size_t i = 0; i < ws.size(); ++i) {
    const int64_t m = off[i + 1] - off[i];
    Tensor yi = Tensor::empty({n, m});
    copy_block(y.data<float>() + off[i], M, yi.data<float>(), m, m);
    out.push_back(result(std::move(yi), r));
  }
  if (!r) return out;
  std::vector<std::weak_ptr<Node>> outs(out.begin(), out.end());
  // One record for all outputs, made after them, so it runs after every consumer's backward.
  Tape::current().record(__func__, [=] {
    bool any = false;
    Tensor dy = Tensor::empty({n, M});
    for (size_t i = 0; i < outs.size(); ++i) {
      const Var o = outs[i].lock();
      const int64_t m = off[i + 1] - off[i];
      if (o && o->grad.defined()) {
        copy_block(o->grad.contiguous().data<float>(), m, dy.data<float>() + off[i], M, m), any = true;
      } else {
        float* d = dy.data<float>() + off[i];
        for (int64_t j = 0; j < n; ++j) std::memset(d + j * M, 0, size_t(m) * sizeof(float));
      }
    }
    if (any) stacked_linear_backward(x, w, dy, ws, bs, off);
  });
  return out;
}

Var layer_norm(const Var& x, const Var& w, const Var& b, float eps) {
  return recorded(__func__, wants({&x, &w, &b}), ops::layer_norm(x->value, w ? &w->value : nullptr, b ? &b->value : nullptr, eps),
                  [=](const Tensor& dy) {
                    ops::layer_norm_backward(x->value, w ? &w->value : nullptr, dy, eps, gp(x), gp(w), gp(b));
                  });
}

Var rms_norm(const Var& x, const Var& w, float eps) {
  return recorded(__func__, wants({&x, &w}), ops::rms_norm(x->value, w ? &w->value : nullptr, eps),
                  [=](const Tensor& dy) { ops::rms_norm_backward(x->value, w ? &w->value : nullptr, dy, eps, gp(x), gp(w)); });
}

Var embedding(const Var& table, const std::vector<int32_t>& ids) {
  return recorded(__func__, wants({&table}), ops::embedding(table->value, ids),
                  [=](const Tensor& dy) { ops::embedding_backward(ids, dy, gp(table)); });
}

Var rope(const Var& x, const std::vector<int32_t>& pos, const ops::RopeParams& p) {
  return recorded(__func__, wants({&x}), ops::rope(x->value, pos, p), [=](const Tensor& dy) { ops::rope_backward(dy, pos, p, gp(x)); });
}

Var attention(const Var& q, const Var& k, const Var& v, const ops::AttentionParams& p) {
  OCELLUS_CHECK(!p.f16_probs, "autograd: attention with f16 probabilities has no backward here");
  const bool r = wants({&q, &k, &v});
  Tensor lse;
  Tensor out = ops::attention(q->value, k->value, v->value, p, r ? &lse : nullptr);
  const Tensor mask = p.mask ? *p.mask : Tensor();  // kept by the record (the caller's may be gone by the backward)
  return recorded(__func__, r, std::move(out), [=](const Tensor& dy, const Node& y) {
    ops::AttentionParams pm = p;
    pm.mask = mask.defined() ? &mask : nullptr;
    ops::attention_backward(q->value, k->value, v->value, y.value, lse, dy, pm, gp(q), gp(k), gp(v));
  });
}

Var attention_segments(const Var& q, const Var& k, const Var& v, const ops::AttentionParams& p,
                       const std::vector<int64_t>& starts, const std::vector<Tensor>& masks) {
  OCELLUS_CHECK(!p.mask && !p.f16_probs, "autograd: attention_segments takes its masks per segment; f16 probabilities have no ",
                "backward here");
  OCELLUS_CHECK(starts.size() >= 2 && starts.front() == 0 && starts.back() == q->value.dim(0) &&
                    k->value.dim(0) == q->value.dim(0) && v->value.dim(0) == q->value.dim(0),
                "autograd: segments must cover the stacked rows of q, k and v");
  OCELLUS_CHECK(masks.empty() || masks.size() + 1 == starts.size(), "autograd: ", masks.size(), " masks for ", starts.size() - 1,
                " segments");
  // Segment s's parameters: its mask where it has one.
  auto params = [p, masks](size_t s) {
    ops::AttentionParams ps = p;
    ps.mask = !masks.empty() && masks[s].defined() ? &masks[s] : nullptr;
    return ps;
  };
  const bool r = wants({&q, &k, &v});
  const Tensor& Q = q->value;
  Tensor out = Tensor::empty({Q.dim(0), Q.dim(1), v->value.dim(2)});
  std::vector<Tensor> lses;
  for (size_t s = 0; s + 1 < starts.size(); ++s) {
    const int64_t a = starts[s], b = starts[s + 1];
    Tensor l;
    const Tensor o = ops::attention(Q.slice(0, a, b), k->value.slice(0, a, b), v->value.slice(0, a, b), params(s), r ? &l : nullptr);
    std::memcpy(out.data<float>() + a * Q.dim(1) * v->value.dim(2), o.data<float>(), o.nbytes());
    if (r) lses.push_back(l);
  }
  return recorded(__func__, r, std::move(out), [=](const Tensor& dy, const Node& y) {
    Tensor* gq = gp(q);
    Tensor* gk = gp(k);
    Tensor* gv = gp(v);
    auto segment = [&](size_t s) {
      const int64_t a = starts[s], b = starts[s + 1];
      Tensor dq = gq ? gq->slice(0, a, b) : Tensor(), dk = gk ? gk->slice(0, a, b) : Tensor(), dv = gv ? gv->slice(0, a, b) : Tensor();
      ops::attention_backward(q->value.slice(0, a, b), k->value.slice(0, a, b), v->value.slice(0, a, b), y.value.slice(0, a, b),
                              lses[s], dy.slice(0, a, b), params(s), gq ? &dq : nullptr, gk ? &dk : nullptr, gv ? &dv : nullptr);
    };
    // A segment's backward is parallel over its kv heads only (each owns its dk, dv): with as
    // many segments as threads and none holding more than a thread's share of the work (cost
    // ~ length²), whole segments go to the threads instead, longest first, each run
    // single-threaded — one parallel region, no thread waiting on another's kv head.
    const size_t n_seg = starts.size() - 1;
    std::vector<size_t> order(n_seg);
    double total = 0, largest = 0;
    for (size_t s = 0; s < n_seg; ++s) {
      const double len = double(starts[s + 1] - starts[s]);
      order[s] = s, total += len * len, largest = std::max(largest, len * len);
    }
    if (n_seg >= size_t(num_threads()) && num_threads() > 1 && largest <= total / num_threads()) {
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t x, size_t z) { return starts[x + 1] - starts[x] > starts[z + 1] - starts[z]; });
      parallel_for_dynamic(int64_t(n_seg), 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) segment(order[size_t(i)]);
      });
    } else {
      for (size_t s = 0; s < n_seg; ++s) segment(s);
    }
  });
}

Var reshape(const Var& x, const Shape& shape) {
  return recorded(__func__, wants({&x}), x->value.reshape(shape), [=](const Tensor& dy) {
    const Tensor dx = dy.reshape(x->value.shape());
    if (Tensor* g = slot_or_share(x, dx)) *g = ops::add(*g, dx);
  });
}

Var concat(const std::vector<Var>& xs, int dim) {
  bool r = false;
  std::vector<Tensor> vals;
  for (const Var& x : xs) r = r || wants({&x}), vals.push_back(x->value);
  return recorded(__func__, r, ops::concat(vals, dim), [=](const Tensor& dy) {
    // Each part's gradient is its slice of dy: shared (a view, no pass) where it is contiguous
    // and the first to reach that input, as slot_or_share argues (the parts are disjoint, so
    // every input may share; an input listed twice adds its second slice into its first).
    const int d = dim < 0 ? dim + dy.ndim() : dim;
    int64_t off = 0;
    for (const Var& x : xs) {
      const int64_t len = x->value.dim(d);
      const Tensor part = dy.slice(d, off, off + len);
      off += len;
      if (x->requires_grad && !x->grad.defined() && part.is_contiguous()) x->grad = part;
      else ops::slice_backward(part, d, 0, gp(x));
    }
  });
}

Var slice(const Var& x, int dim, int64_t start, int64_t end) {
  return recorded(__func__, wants({&x}), ops::slice(x->value, dim, start, end),
                  [=](const Tensor& dy) { ops::slice_backward(dy, dim, start, gp(x)); });
}

Var cross_entropy(const Var& logits, const std::vector<int32_t>& targets, int32_t ignore_index) {
  const bool r = wants({&logits});
  auto lse = std::make_shared<std::vector<float>>();  // each row's log Σ exp, kept for the backward
  const float loss = ops::cross_entropy(logits->value, targets, ignore_index, r ? lse.get() : nullptr);
  return recorded(__func__, r, Tensor::full({1}, loss), [=](const Tensor& dy) {
    ops::cross_entropy_backward(logits->value, targets, dy.data<float>()[0], gp(logits), ignore_index, lse.get());
  });
}

Var conv2d(const Var& x, const Var& w, const Var& b, int64_t stride, int64_t pad) {
  return recorded(__func__, wants({&x, &w, &b}), ops::conv2d(x->value, w->value, b ? &b->value : nullptr, stride, pad),
                  [=](const Tensor& dy) { ops::conv2d_backward(x->value, w->value, dy, stride, pad, gp(x), gp(w), gp(b)); });
}

Var group_norm(const Var& x, const Var& w, const Var& b, int64_t groups, float eps) {
  return recorded(__func__, wants({&x, &w, &b}), ops::group_norm(x->value, w->value, b->value, groups, eps),
                  [=](const Tensor& dy) { ops::group_norm_backward(x->value, w->value, groups, eps, dy, gp(x), gp(w), gp(b)); });
}

Var upsample2x(const Var& x) {
  return recorded(__func__, wants({&x}), ops::upsample2x(x->value), [=](const Tensor& dy) { ops::upsample2x_backward(dy, gp(x)); });
}

Var mse(const Var& pred, const Var& target) {
  return recorded(__func__, wants({&pred, &target}), Tensor::full({1}, ops::mse(pred->value, target->value)),
                  [=](const Tensor& dy) { ops::mse_backward(pred->value, target->value, dy.data<float>()[0], gp(pred), gp(target)); });
}

Var gaussian_sample(const Var& mean, const Var& logvar, const Tensor& noise) {
  return recorded(__func__, wants({&mean, &logvar}), ops::gaussian_sample(mean->value, logvar->value, noise),
                  [=](const Tensor& dy) { ops::gaussian_sample_backward(logvar->value, noise, dy, gp(mean), gp(logvar)); });
}

Var gaussian_kl(const Var& mean, const Var& logvar) {
  return recorded(__func__, wants({&mean, &logvar}), Tensor::full({1}, ops::gaussian_kl(mean->value, logvar->value)),
                  [=](const Tensor& dy) {
                    ops::gaussian_kl_backward(mean->value, logvar->value, dy.data<float>()[0], gp(mean), gp(logvar));
                  });
}

Var patch_embed(const Tensor& image, const Var& w, const Var& b, int64_t patch) {
  return recorded(__func__, wants({&w, &b}), ops::patch_embed(image, w->value, b ? &b->value : nullptr, patch),
                  [=](const Tensor& dy) { ops::patch_embed_backward(image, w->value, dy, patch, nullptr, gp(w), gp(b)); });
}

Var avg_pool2(const Var& x) {
  return recorded(__func__, wants({&x}), ops::avg_pool2(x->value), [=](const Tensor& dy) { ops::avg_pool2_backward(dy, gp(x)); });
}

Var depthwise3x3(const Var& x, const Var& w, const Var& b) {
  return recorded(__func__, wants({&x, &w, &b}), ops::depthwise3x3(x->value, w->value, b ? &b->value : nullptr),
                  [=](const Tensor& dy) { ops::depthwise3x3_backward(x->value, w->value, dy, gp(x), gp(w), gp(b)); });
}

Var segment_mean(const Var& x, const std::vector<int64_t>& starts) {
  const Tensor& X = x->value;
  OCELLUS_CHECK(X.ndim() == 2 && starts.size() >= 2 && starts.front() == 0 && starts.back() == X.dim(0),
                "autograd: segment_mean needs [n, d] rows covered by the segments");
  const int64_t S = int64_t(starts.size()) - 1, d = X.dim(1);
  const Tensor xc = X.contiguous();
  Tensor out = Tensor::zeros({S, d});
  for (int64_t s = 0; s < S; ++s) {
    const int64_t a = starts[size_t(s)], e = starts[size_t(s) + 1];
    OCELLUS_CHECK(e > a, "autograd: segment_mean: empty segment ", s);
    float* o = out.data<float>() + s * d;
    for (int64_t i = a; i < e; ++i)
      for (int64_t j = 0; j < d; ++j) o[j] += xc.data<float>()[i * d + j];
    const float inv = 1.0f / float(e - a);
    for (int64_t j = 0; j < d; ++j) o[j] *= inv;
  }
  return recorded(__func__, wants({&x}), out, [=](const Tensor& dy) {
    Tensor* g = gp(x);
    const Tensor dyc = dy.contiguous();
    for (int64_t s = 0; s < S; ++s) {
      const int64_t a = starts[size_t(s)], e = starts[size_t(s) + 1];
      const float inv = 1.0f / float(e - a);
      for (int64_t i = a; i < e; ++i)
        for (int64_t j = 0; j < d; ++j) g->data<float>()[i * d + j] += dyc.data<float>()[s * d + j] * inv;
    }
  });
}

Var sigmoid_pair_loss(const Var& img, const Var& txt, const Var& log_scale, const Var& bias) {
  const Tensor zi = img->value.contiguous(), zt = txt->value.contiguous();
  OCELLUS_CHECK(zi.ndim() == 2 && zi.shape() == zt.shape() && log_scale->value.numel() == 1 && bias->value.numel() == 1,
                "autograd: sigmoid_pair_loss needs image and text embeddings of one shape [n, e] and scalar scale / bias");
  const int64_t n = zi.dim(0), e = zi.dim(1);
  // Normalized rows (double accumulation; n and e are small).
  auto normalize = [&](const Tensor& z, std::vector<double>& u, std::vector<double>& norm) {
    u.assign(size_t(n * e), 0), norm.assign(size_t(n), 0);
    for (int64_t i = 0; i < n; ++i) {
      double s = 0;
      for (int64_t j = 0; j < e; ++j) s += double(z.data<float>()[i * e + j]) * z.data<float>()[i * e + j];
      norm[size_t(i)] = std::max(std::sqrt(s), 1e-12);
      for (int64_t j = 0; j < e; ++j) u[size_t(i * e + j)] = z.data<float>()[i * e + j] / norm[size_t(i)];
    }
  };
  std::vector<double> ui, ut, ni, nt;
  normalize(zi, ui, ni), normalize(zt, ut, nt);
  const double t = std::exp(double(log_scale->value.data<float>()[0])), b = bias->value.data<float>()[0];
  std::vector<double> cos(size_t(n * n)), dlogit(size_t(n * n));
  double loss = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double c = 0;
      for (int64_t k = 0; k < e; ++k) c += ui[size_t(i * e + k)] * ut[size_t(j * e + k)];
      cos[size_t(i * n + j)] = c;
      const double z = (i == j ? 1.0 : -1.0) * (t * c + b);
      // -log sigmoid(z) = softplus(-z), computed stably.
      loss += z > 0 ? std::log1p(std::exp(-z)) : -z + std::log1p(std::exp(z));
      // d/dlogit of softplus(-label * logit) = -label * sigmoid(-z).
      const double sig_neg = 1.0 / (1.0 + std::exp(z));
      dlogit[size_t(i * n + j)] = -(i == j ? 1.0 : -1.0) * sig_neg / double(n);
    }
  const bool r = wants({&img, &txt, &log_scale, &bias});
  return recorded(__func__, r, Tensor::full({1}, float(loss / double(n))), [=](const Tensor& dy) {
    const double g = dy.data<float>()[0];
    double dscale = 0, dbias = 0;
    std::vector<double> dui(size_t(n * e), 0), dut(size_t(n * e), 0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const double dl = g * dlogit[size_t(i * n + j)];
        dbias += dl, dscale += dl * t * cos[size_t(i * n + j)];
        for (int64_t k = 0; k < e; ++k) {
          dui[size_t(i * e + k)] += dl * t * ut[size_t(j * e + k)];
          dut[size_t(j * e + k)] += dl * t * ui[size_t(i * e + k)];
        }
      }
    // Through the normalization: dz = (du - u <u, du>) / |z|.
    auto back = [&](const Var& v, const std::vector<double>& u, const std::vector<double>& du, const std::vector<double>& norm) {
      Tensor* gz = gp(v);
      if (!gz) return;
      for (int64_t i = 0; i < n; ++i) {
        double dot = 0;
        for (int64_t k = 0; k < e; ++k) dot += u[size_t(i * e + k)] * du[size_t(i * e + k)];
        for (int64_t k = 0; k < e; ++k)
          gz->data<float>()[i * e + k] += float((du[size_t(i * e + k)] - u[size_t(i * e + k)] * dot) / norm[size_t(i)]);
      }
    };
    back(img, ui, dui, ni), back(txt, ut, dut, nt);
    if (Tensor* gs = gp(log_scale)) gs->data<float>()[0] += float(dscale);
    if (Tensor* gb = gp(bias)) gb->data<float>()[0] += float(dbias);
  });
}

}  // namespace ocellus::ag
