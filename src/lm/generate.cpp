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

GenerateResult generate_embedded(const LanguageModel& model, const text::Tokenizer& tok, const Tensor& prompt_embd,
                                 const std::vector<int32_t>& prompt_ids, const GenerateParams& p,
                                 const std::function<void(const std::string&)>& on_text) {
  using Clock = std::chrono::steady_clock;
  OCELLUS_CHECK(prompt_embd.ndim() == 2 && prompt_embd.dim(0) > 0, "generate: empty prompt");
  OCELLUS_CHECK(int64_t(prompt_ids.size()) == prompt_embd.dim(0), "generate: ", prompt_ids.size(), " ids for ",
                prompt_embd.dim(0), " prompt rows");
  std::vector<int32_t> prompt;  // the text tokens (image rows, id -1, take no repetition penalty)
  for (int32_t id : prompt_ids)
    if (id >= 0) prompt.push_back(id);
  const int64_t n_ctx = context_size(p, model.config());
  check_prompt_fits(prompt_embd.dim(0), n_ctx);
  KvCache cache(model.config(), n_ctx);
  Sampler sampler(p.sampling);
  GenerateResult r;
  r.n_prompt = prompt_embd.dim(0);
  std::vector<int32_t> history = prompt;
  text::Tokenizer::Stream stream(tok);
  std::string pending;  // text held back while it could be the start of a stop string

  auto t0 = Clock::now();
  Tensor logits = model.forward(prompt_embd, cache, false);
  r.prefill_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const int64_t V = model.config().n_vocab;
  auto t1 = Clock::now();
  r.stop_reason = "length";
  for (int32_t i = 0; i < p.n_predict; ++i) {
    const int32_t id = sampler.sample(logits.data<float>(), V, history);
    if (id == tok.eos() || (tok.type(id) == text::TokenType::Control && id != tok.bos())) {
      r.stop_reason = "eos";
      break;
    }
    r.tokens.push_back(id);
    history.push_back(id);
    pending += stream.push(id);
    // Emit what can no longer become a stop string.
    bool stopped = false;
    for (const std::string& s : p.stop) {
      const size_t at = s.empty() ? std::string::npos : pending.find(s);
      if (at != std::string::npos) {
        pending.resize(at);
        stopped = true;
      }
    }
    size_t keep = 0;
    if (!stopped)
      for (const std::string& s : p.stop)
        for (size_t k = std::min(s.size() - 1, pending.size()); k > keep; --k)
          if (pending.compare(pending.size() - k, k, s, 0, k) == 0) { keep = k; break; }
    const std::string out = pending.substr(0, pending.size() - keep);
    pending.erase(0, out.size());
    r.text += out;
    if (on_text && !out.empty()) on_text(out);
    if (stopped) {
      r.stop_reason = "stop string";
      break;
    }
    if (cache.n_past() + 1 > cache.capacity()) {
      r.stop_reason = "context";
      break;
    }
    logits = model.forward_ids({id}, cache, false);
  }
  if (r.stop_reason != "stop string") {
    pending += stream.flush();
    r.text += pending;
    if (on_text && !pending.empty()) on_text(pending);
  }
  r.decode_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  return r;
}

}  // namespace ocellus::lm
