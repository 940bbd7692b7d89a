#pragma once
// Optimizers and schedules for training: AdamW with parameter groups (each its own learning
// rate and weight decay, as LlamaFusion's and TinyLLaVA's recipes set per component), global
// gradient-norm clipping, and the cosine schedule with linear warmup. The update follows
// PyTorch's torch.optim.AdamW step for step, so losses track a PyTorch run.
#include <cstdint>
#include <vector>

#include "ocellus/autograd/autograd.h"

namespace ocellus::train {

struct ParamGroup {
  std::vector<ag::Var> params;
  double lr = 1e-3;
  double weight_decay = 0.0;
};

class AdamW {
 public:
  explicit AdamW(std::vector<ParamGroup> groups, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8);
  // One update of every parameter that has a gradient, with each group's lr times lr_factor.
  void step(double lr_factor = 1.0);
  void zero_grad();  // drops the gradients (they are allocated again by the next backward)
  int64_t steps() const { return t_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  // The moments of parameter i (in group order), for checkpoints.
  std::vector<Tensor>& m() { return m_; }
  std::vector<Tensor>& v() { return v_; }
  void set_steps(int64_t t) { t_ = t; }

 private:
  std::vector<ParamGroup> groups_;
  double b1_, b2_, eps_;
  int64_t t_ = 0;
  std::vector<Tensor> m_, v_;  // per parameter, in group order
};

// Scales all gradients so their global L2 norm is at most max_norm (torch.nn.utils.
// clip_grad_norm_); returns the norm before clipping.
double clip_grad_norm(const std::vector<ag::Var>& params, double max_norm);

// The learning-rate factor at `step` (0-based): linear warmup from 0 over warmup steps, then a
// cosine from 1 down to min_ratio at total steps (transformers' cosine schedule with min ratio).
double cosine_schedule(int64_t step, int64_t warmup, int64_t total, double min_ratio = 0.0);

}  // namespace ocellus::train
