#pragma once
// Choosing the next token from logits: greedy, or temperature sampling narrowed by top-k,
// top-p (nucleus) and min-p, after a repetition penalty on recent tokens. Seeded: the same seed
// and inputs give the same tokens.
#include <cstdint>
#include <random>
#include <vector>

namespace ocellus::lm {

struct SamplingParams {
  float temperature = 0.0f;      // 0: greedy (argmax)
  int32_t top_k = 40;            // 0: off
  float top_p = 0.95f;           // 1: off
  float min_p = 0.05f;           // 0: off (relative to the most likely token)
  float repeat_penalty = 1.0f;   // 1: off; > 1 makes recent tokens less likely (CTRL's rule)
  int32_t repeat_last_n = 64;    // how many recent tokens the penalty looks at
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) {}
  // logits [n_vocab]; history = tokens so far (for the repetition penalty).
  int32_t sample(const float* logits, int64_t n_vocab, const std::vector<int32_t>& history);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
};

}  // namespace ocellus::lm
