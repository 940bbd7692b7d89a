#include "ocellus/lm/generate.h"

#include <algorithm>
#include <chrono>

#include "ocellus/core/error.h"

namespace ocellus::lm {

int64_t context_size(const GenerateParams& p, const LmConfig& c) {
  return p.n_ctx > 0 ? p.n_ctx : std::min<int64_t>(c.n_ctx > 0 ? c.n_ctx : 4096, 4096);
}

void check_prompt_fits(int64_t n_prompt, int64_t n_ctx) {
  if (n_prompt >= n_ctx)
    fail("the prompt has ", n_prompt, " tokens but the context holds ", n_ctx, " (shorten it, or raise the context size with -c N)");
}

GenerateResult generate(const LanguageModel& model, const text::Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateParams& p, const std::function<void(const std::string&)>& on_text) {
  OCELLUS_CHECK(!prompt.empty(), "generate: empty prompt");
  return generate_embedded(model, tok, model.embed(prompt), prompt, p, on_text);
}

Generation::Generation(const text::Tokenizer& tok, const GenerateParams& p, const std::vector<int32_t>& prompt_ids)
    : tok_(tok), p_(p), sampler_(p.sampling), stream_(tok) {
  for (int32_t id : prompt_ids)
    if (id >= 0) history_.push_back(id);
  r_.n_prompt = int64_t(prompt_ids.size());
  r_.stop_reason = "length";
  if (p_.n_predict <= 0) done_ = true;
}

std::string Generation::finish(const std::string& reason, std::string out) {
  r_.stop_reason = reason;
  done_ = true, next_ = -1;
  if (reason != "stop string") {  // the text still held back, and any incomplete character
    const std::string rest = pending_ + stream_.flush();
    r_.text += rest, out += rest;
  }
  pending_.clear();
  return out;
}

std::string Generation::step(const float* logits, int64_t n_vocab, int64_t n_past, int64_t capacity) {
  OCELLUS_CHECK(!done_, "generate: a step after the generation ended");
  const int32_t id = sampler_.sample(logits, n_vocab, history_);
  if (id == tok_.eos() || (tok_.type(id) == text::TokenType::Control && id != tok_.bos())) return finish("eos", "");
  r_.tokens.push_back(id);
  history_.push_back(id);
  pending_ += stream_.push(id);
  // Emit what can no longer become a stop string.
  bool stopped = false;
  for (const std::string& s : p_.stop) {
    const size_t at = s.empty() ? std::string::npos : pending_.find(s);
    if (at != std::string::npos) {
      pending_.resize(at);
      stopped = true;
    }
  }
  size_t keep = 0;
  if (!stopped)
    for (const std::string& s : p_.stop)
      for (size_t k = std::min(s.size() - 1, pending_.size()); k > keep; --k)
        if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
          keep = k;
          break;
        }
  std::string out = pending_.substr(0, pending_.size() - keep);
  pending_.erase(0, out.size());
  r_.text += out;
  if (stopped) return finish("stop string", out);
  if (n_past + 1 > capacity) return finish("context", out);
  if (int64_t(r_.tokens.size()) >= p_.n_predict) return finish("length", out);
  next_ = id;
  return out;
}

GenerateResult generate_embedded(const LanguageModel& model, const text::Tokenizer& tok, const Tensor& prompt_embd,
                                 const std::vector<int32_t>& prompt_ids, const GenerateParams& p,
                                 const std::function<void(const std::string&)>& on_text) {
  using Clock = std::chrono::steady_clock;
  OCELLUS_CHECK(prompt_embd.ndim() == 2 && prompt_embd.dim(0) > 0, "generate: empty prompt");
  OCELLUS_CHECK(int64_t(prompt_ids.size()) == prompt_embd.dim(0), "generate: ", prompt_ids.size(), " ids for ",
                prompt_embd.dim(0), " prompt rows");
  const int64_t n_ctx = context_size(p, model.config());
  check_prompt_fits(prompt_embd.dim(0), n_ctx);
  KvCache cache(model.config(), n_ctx);
  Generation g(tok, p, prompt_ids);
  auto t0 = Clock::now();
  Tensor logits = model.forward(prompt_embd, cache, false);
  const double prefill = std::chrono::duration<double>(Clock::now() - t0).count();
  auto t1 = Clock::now();
  while (!g.done()) {
    const std::string out = g.step(logits.data<float>(), model.config().n_vocab, cache.n_past(), cache.capacity());
    if (on_text && !out.empty()) on_text(out);
    if (!g.done()) logits = model.forward_ids({g.next()}, cache, false);
  }
  GenerateResult r = std::move(g.result());
  r.prefill_seconds = prefill;
  r.decode_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  return r;
}

}  // namespace ocellus::lm
