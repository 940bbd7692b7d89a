#pragma once
// Perplexity of a text model on held-out texts: exp of the mean negative log-likelihood of every
// token after the first of each text, each text its own sequence (full precision cache). How
// LlamaFusion shows that its language model is untouched, and that Transfusion's is not.
#include <cstdint>
#include <vector>

#include "ocellus/lm/lm.h"

namespace ocellus::eval {

struct Perplexity {
  double ppl = 0, nll = 0;  // nll: the mean per token (nats)
  int64_t tokens = 0;       // predicted tokens
};
Perplexity text_perplexity(const lm::LanguageModel& m, const std::vector<std::vector<int32_t>>& texts);

}  // namespace ocellus::eval
