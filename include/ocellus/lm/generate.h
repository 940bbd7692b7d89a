#pragma once
// Text generation: prefill the prompt in one batched pass, then decode token by token with the
// KV cache, streaming text as it is produced; stops at an end-of-sequence token, a stop string,
// the token budget, or the end of the context.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ocellus/lm/lm.h"
#include "ocellus/lm/sampling.h"
#include "ocellus/text/tokenizer.h"

namespace ocellus::lm {

struct GenerateParams {
  int32_t n_predict = 128;
  int64_t n_ctx = 0;                    // 0: the model's context length, at most 4096
  SamplingParams sampling;
  std::vector<std::string> stop;        // stop strings (not printed)
};

struct GenerateResult {
  std::vector<int32_t> tokens;          // generated ids
  std::string text;
  std::string stop_reason;              // "eos", "stop string", "length", "context"
  int64_t n_prompt = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

// The context a generation runs in: p.n_ctx, or the model's context length (at most 4096).
int64_t context_size(const GenerateParams& p, const LmConfig& c);
// An Error unless a prompt of n_prompt tokens leaves room for one generated token in n_ctx.
void check_prompt_fits(int64_t n_prompt, int64_t n_ctx);

// on_text receives each new piece of text (valid UTF-8 only: whole characters, invalid bytes as U+FFFD).
GenerateResult generate(const LanguageModel& model, const text::Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateParams& p, const std::function<void(const std::string&)>& on_text = {});

// The same from prompt rows already embedded (a VLM prompt with image rows spliced in):
// prompt_embd [n, n_embd] and its ids, -1 at image rows.
GenerateResult generate_embedded(const LanguageModel& model, const text::Tokenizer& tok, const Tensor& prompt_embd,
                                 const std::vector<int32_t>& prompt_ids, const GenerateParams& p,
                                 const std::function<void(const std::string&)>& on_text = {});

}  // namespace ocellus::lm
