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

// One sequence's generation after its prompt, a token at a time, so that a caller can run the
// model over many sequences at once (the server's batched decoding) and still stop each as
// generate does: at an end-of-sequence or control token, a stop string (text that could still
// become one is held back, and the stop string is not emitted), the token budget, or the end of
// the context.
class Generation {
 public:
  // prompt_ids: the prompt's token ids (-1 at image rows, which take no repetition penalty).
  Generation(const text::Tokenizer& tok, const GenerateParams& p, const std::vector<int32_t>& prompt_ids);
  // From the logits [n_vocab] after the last row fed: samples a token and returns the text it
  // completes (possibly empty). next() is then the id to feed, or -1 when the generation ended
  // (result().stop_reason says why). n_past / capacity: the sequence's cache after the last row.
  std::string step(const float* logits, int64_t n_vocab, int64_t n_past, int64_t capacity);
  int32_t next() const { return next_; }
  bool done() const { return done_; }
  const GenerateResult& result() const { return r_; }
  GenerateResult& result() { return r_; }

 private:
  std::string finish(const std::string& reason, std::string out);
  const text::Tokenizer& tok_;
  GenerateParams p_;
  Sampler sampler_;
  std::vector<int32_t> history_;
  text::Tokenizer::Stream stream_;
  std::string pending_;  // text held back while it could be the start of a stop string
  GenerateResult r_;
  int32_t next_ = -1;
  bool done_ = false;
};

// on_text receives each new piece of text (valid UTF-8 only: whole characters, invalid bytes as U+FFFD).
GenerateResult generate(const LanguageModel& model, const text::Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateParams& p, const std::function<void(const std::string&)>& on_text = {});

// The same from prompt rows already embedded (a VLM prompt with image rows spliced in):
// prompt_embd [n, n_embd] and its ids, -1 at image rows.
GenerateResult generate_embedded(const LanguageModel& model, const text::Tokenizer& tok, const Tensor& prompt_embd,
                                 const std::vector<int32_t>& prompt_ids, const GenerateParams& p,
                                 const std::function<void(const std::string&)>& on_text = {});

}  // namespace ocellus::lm
