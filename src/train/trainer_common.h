#pragma once
// Pieces every training loop shares (the next-token trainer and the SigLIP one): the sample
// order, checkpoints written atomically and read back, the loss curve. Internal to train/.
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ocellus/autograd/autograd.h"
#include "ocellus/train/optim.h"

namespace ocellus::train::detail {

// The order samples are seen in: epoch e is a Fisher-Yates shuffle seeded by (seed, e).
class Order {
 public:
  Order(size_t n, uint64_t seed) : n_(n), seed_(seed) {}
  size_t at(int64_t pos) {
    const int64_t epoch = pos / int64_t(n_);
    if (epoch != epoch_) {
      perm_.resize(n_);
      for (size_t i = 0; i < n_; ++i) perm_[i] = i;
      std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ull + uint64_t(epoch));
      for (size_t i = n_ - 1; i > 0; --i) std::swap(perm_[i], perm_[size_t(rng() % (i + 1))]);
      epoch_ = epoch;
    }
    return perm_[size_t(pos % int64_t(n_))];
  }

 private:
  size_t n_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<size_t> perm_;
};

// checkpoints/step-NNNNNNNN/{model,optimizer}.safetensors + trainer.json, then `latest` names it
// (a kill before that leaves the previous one latest); only the newest `keep` are kept.
void save_checkpoint(const std::string& out, int64_t step, const std::vector<std::pair<std::string, Tensor>>& tensors, AdamW& opt,
                     int64_t keep);
// Loads the latest checkpoint into params (by name) and the optimizer; returns its step.
int64_t load_checkpoint(const std::string& out, const std::vector<ag::Var>& params, AdamW& opt);
// The metrics log after a resume: its lines up to `step` kept, later ones dropped (they run again).
void keep_log_until(const std::string& log_path, int64_t step);
// The losses a metrics log holds, in order (for the curve over a whole, possibly resumed, run).
std::vector<double> logged_losses(const std::string& log_path);
// A line chart of the losses, as a PNG.
void draw_loss_curve(const std::vector<double>& losses, const std::string& path);

}  // namespace ocellus::train::detail
