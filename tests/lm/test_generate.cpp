#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/lm/generate.h"
#include "ocellus/lm/sampling.h"
#include "testutil.h"

using namespace ocellus;

TEST(Sampling, GreedyAndNarrowingRules) {
  const std::vector<float> l = {0.1f, 2.0f, 1.9f, -1.0f, 0.5f};
  lm::SamplingParams g;  // temperature 0: argmax
  EXPECT_EQ(lm::Sampler(g).sample(l.data(), 5, {}), 1);
  lm::SamplingParams k1;
  k1.temperature = 1.0f, k1.top_k = 1, k1.seed = 7;
  lm::Sampler s1(k1);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s1.sample(l.data(), 5, {}), 1);  // top-k 1 is greedy
  lm::SamplingParams p;
  p.temperature = 1.0f, p.top_k = 0, p.top_p = 0.3f, p.min_p = 0.0f;
  lm::Sampler sp(p);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(sp.sample(l.data(), 5, {}), 1);  // the best token alone reaches 0.3
  lm::SamplingParams mp;
  mp.temperature = 1.0f, mp.top_k = 0, mp.top_p = 1.0f, mp.min_p = 0.5f, mp.seed = 3;
  lm::Sampler sm(mp);
  for (int i = 0; i < 50; ++i) {
    const int32_t t = sm.sample(l.data(), 5, {});
    EXPECT_TRUE(t == 1 || t == 2) << t;  // only tokens within half the best one's probability
  }
  lm::SamplingParams r;
  r.repeat_penalty = 100.0f;
  EXPECT_EQ(lm::Sampler(r).sample(l.data(), 5, {1}), 2);  // the repeated token is pushed down
}

TEST(Sampling, SeedReproducible) {
  std::vector<float> l(1000);
  for (size_t i = 0; i < l.size(); ++i) l[i] = float((i * 37) % 101) / 20.0f;
  lm::SamplingParams p;
  p.temperature = 1.5f, p.top_k = 0, p.top_p = 1.0f, p.min_p = 0.0f, p.seed = 42;
  lm::Sampler a(p), b(p);
  std::vector<int32_t> x, y;
  for (int i = 0; i < 100; ++i) x.push_back(a.sample(l.data(), 1000, x)), y.push_back(b.sample(l.data(), 1000, y));
  EXPECT_EQ(x, y);
  p.seed = 43;
  lm::Sampler c(p);
  std::vector<int32_t> z;
  for (int i = 0; i < 100; ++i) z.push_back(c.sample(l.data(), 1000, z));
  EXPECT_NE(x, z);
}

TEST(Generate, StopsAtStopStringAndLengthAndContext) {
  const io::GgufFile f = io::GgufFile::open(std::string(OCELLUS_FIXTURES) + "/peer/tiny-qwen2-f32.gguf");
  auto model = lm::load_gguf(f);
  const auto tok = text::Tokenizer::from_gguf(f);
  const std::vector<int32_t> prompt = tok.encode("Hello world", true);
  lm::GenerateParams p;
  p.n_predict = 12;
  std::string streamed;
  const lm::GenerateResult full = lm::generate(*model, tok, prompt, p, [&](const std::string& s) { streamed += s; });
  EXPECT_EQ(full.stop_reason, "length");
  EXPECT_EQ(full.tokens.size(), 12u);
  EXPECT_EQ(streamed, full.text);
  EXPECT_EQ(full.text, tok.decode(full.tokens));
  // Greedy is deterministic: a piece of the text as a stop string ends the text just before it.
  ASSERT_GT(full.text.size(), 6u);
  const std::string stop = full.text.substr(full.text.size() / 2, 3);
  p.stop = {stop};
  streamed.clear();
  const lm::GenerateResult cut = lm::generate(*model, tok, prompt, p, [&](const std::string& s) { streamed += s; });
  EXPECT_EQ(cut.stop_reason, "stop string");
  EXPECT_EQ(cut.text, full.text.substr(0, full.text.find(stop)));
  EXPECT_EQ(streamed, cut.text);
  // A context that fills up ends generation cleanly; a prompt that does not fit is an error.
  p.stop.clear();
  p.n_ctx = int64_t(prompt.size()) + 4;
  EXPECT_EQ(lm::generate(*model, tok, prompt, p).stop_reason, "context");
  p.n_ctx = int64_t(prompt.size());
  EXPECT_THROW(lm::generate(*model, tok, prompt, p), Error);
}

namespace {

// Greedy generation of several prompts at once as the server runs it: each prompt prefilled
// alone, then every active sequence's next token through the model in one batch.
std::vector<lm::GenerateResult> generate_batched(const lm::LanguageModel& m, const text::Tokenizer& tok,
                                                 const std::vector<std::vector<int32_t>>& prompts,
                                                 const std::vector<int32_t>& n_predict, double* first_step_err) {
  std::vector<lm::KvCache> caches;
  std::vector<lm::Generation> gens;
  std::vector<Tensor> logits;
  for (size_t i = 0; i < prompts.size(); ++i) {
    caches.emplace_back(m.config(), 64);
    lm::GenerateParams p;
    p.n_predict = n_predict[i];
    gens.emplace_back(tok, p, prompts[i]);
    logits.push_back(m.forward_ids(prompts[i], caches.back(), false));
  }
  const int64_t V = m.config().n_vocab;
  for (size_t i = 0; i < gens.size(); ++i) gens[i].step(logits[i].data<float>(), V, caches[i].n_past(), caches[i].capacity());
  bool first = true;
  for (;;) {
    std::vector<size_t> active;
    std::vector<int32_t> ids;
    std::vector<lm::KvCache*> cs;
    for (size_t i = 0; i < gens.size(); ++i)
      if (!gens[i].done()) active.push_back(i), ids.push_back(gens[i].next()), cs.push_back(&caches[i]);
    if (active.empty()) break;
    std::vector<lm::KvCache> alone;  // the first batched step again, one sequence at a time
    if (first)
      for (size_t i : active) alone.push_back(caches[i]);
    const Tensor out = m.forward_batch(m.embed(ids), cs, std::vector<int64_t>(active.size(), 1));
    EXPECT_EQ(out.dim(0), int64_t(active.size()));
    for (size_t k = 0; k < active.size(); ++k) {
      const Tensor row = out.slice(0, int64_t(k), int64_t(k) + 1).contiguous();
      if (first) {
        const Tensor want = m.forward_ids({ids[k]}, alone[k], false);
        *first_step_err = std::max(*first_step_err, test::rel_err(row, want));
      }
      const size_t i = active[k];
      gens[i].step(row.data<float>(), V, caches[i].n_past(), caches[i].capacity());
    }
    first = false;
  }
  std::vector<lm::GenerateResult> r;
  for (const lm::Generation& g : gens) r.push_back(g.result());
  return r;
}

}  // namespace

TEST(Generate, BatchedDecodingGivesEachSequenceItsOwnTokens) {
  for (const char* file : {"tiny-qwen2-f32.gguf", "tiny-llama-q8_0.gguf"}) {
    const io::GgufFile f = io::GgufFile::open(std::string(OCELLUS_FIXTURES) + "/peer/" + file);
    auto model = lm::load_gguf(f);
    const auto tok = text::Tokenizer::from_gguf(f);
    const std::vector<std::vector<int32_t>> prompts = {tok.encode("Hello world", true), tok.encode("The cat sat on", true),
                                                       tok.encode("1 2 3 4 5 6 7", true)};
    const std::vector<int32_t> n_predict = {10, 4, 7};  // sequences leave the batch at different steps
    double err = 0;
    const std::vector<lm::GenerateResult> batched = generate_batched(*model, tok, prompts, n_predict, &err);
    for (size_t i = 0; i < prompts.size(); ++i) {
      lm::GenerateParams p;
      p.n_predict = n_predict[i];
      p.n_ctx = 64;
      const lm::GenerateResult alone = lm::generate(*model, tok, prompts[i], p);
      EXPECT_EQ(batched[i].tokens, alone.tokens) << file << " prompt " << i;
      EXPECT_EQ(batched[i].text, alone.text) << file << " prompt " << i;
      EXPECT_EQ(batched[i].stop_reason, alone.stop_reason);
    }
    std::printf("%s: a batched step's logits vs one sequence alone: rel err %.2e\n", file, err);
    // 3 rows go through the GEMM path, 1 row through the matrix-vector kernels: the same sums
    // in another order (measured 0 / 0 on an Intel Xeon, AVX-512 VNNI).
    EXPECT_LE(err, 1e-5);
  }
}
