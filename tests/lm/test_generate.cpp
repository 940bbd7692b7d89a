#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/lm/generate.h"
#include "ocellus/lm/sampling.h"

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
