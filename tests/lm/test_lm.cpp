#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/lm/lm.h"
#include "testutil.h"

using namespace ocellus;

namespace {

const std::string kPeer = std::string(OCELLUS_FIXTURES) + "/peer/";

using test::read_array;

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += double(a[i] - b[i]) * (a[i] - b[i]), den += double(b[i]) * b[i];
  return std::sqrt(num / den);
}

}  // namespace

// fixture: the fixture README's tolerance, what an implementation must reach. bound: the
// regression bound, 10x the worst relative L2 error achieved over the generic / avx2 / avx512
// kernel tables (OCELLUS_ISA=...) on an Intel Xeon (AVX-512 VNNI), or the fixture's tolerance
// where that is tighter; never looser than it.
struct ParityCase {
  const char* model;
  double fixture, bound;
  const char* dir = "peer";  // the fixtures' folder
};

class LogitsParity : public ::testing::TestWithParam<ParityCase> {};

// Every position's logits against the independent engine, within the fixture README's bounds.
TEST_P(LogitsParity, MatchesPeer) {
  const ParityCase p = GetParam();
  const std::string dir = std::string(OCELLUS_FIXTURES) + "/" + p.dir + "/";
  io::GgufFile f = io::GgufFile::open(dir + "tiny-" + p.model + ".gguf");
  auto model = lm::load_gguf(f);
  const std::vector<int32_t> ids = read_array<int32_t>(dir + p.model + ".tokens.i32");
  const std::vector<float> want = read_array<float>(dir + p.model + ".logits.f32");
  lm::KvCache cache(model->config(), 256);
  const Tensor logits = model->forward_ids(ids, cache, true);
  ASSERT_EQ(logits.shape(), (Shape{int64_t(ids.size()), model->config().n_vocab}));
  ASSERT_EQ(size_t(logits.numel()), want.size());
  const double err = rel_l2(logits.to_vector(), want);
  EXPECT_LE(p.bound, p.fixture) << p.model;
  EXPECT_LE(err, p.fixture) << p.model;
  EXPECT_LE(err, p.bound) << p.model;
  std::printf("[ parity ] %-12s rel L2 %.3g (bound %.1e, fixture %.0e)\n", p.model, err, p.bound, p.fixture);
}

INSTANTIATE_TEST_SUITE_P(Peer, LogitsParity,
                         ::testing::Values(
                             // worst 5.46e-7 (avx2, avx512; generic 4.38e-7); bound = 10x. Rope with
                             // exact angles instead of llama.cpp's float ones gives 9.9e-6.
                             ParityCase{"llama-f32", 1e-4, 5.5e-6},
                             // worst 1.38e-3 (every table: llama.cpp rounds activations to f16 for
                             // f16 weights, ocellus does not); 10x would pass the fixture's 5e-3,
                             // which stays (3.6x).
                             ParityCase{"llama-f16", 5e-3, 5e-3},
                             // worst 6.61e-8 (generic; avx2 / avx512 6.44e-8): the 8-bit activations
                             // rounded as llama.cpp's; bound = 10x.
                             ParityCase{"llama-q8_0", 2e-2, 6.6e-7},
                             // worst 6.61e-8 (generic; avx2 / avx512 6.43e-8); bound = 10x.
                             ParityCase{"llama-q4_0", 5e-2, 6.6e-7},
                             // worst 4.34e-6, 1.85e-7, 2.54e-6 (the same on every table); bound = 10x.
                             ParityCase{"qwen2-f32", 1e-4, 4.3e-5}, ParityCase{"phi2-f32", 1e-4, 1.9e-6},
                             ParityCase{"stablelm-f32", 1e-4, 2.5e-5}),
                         [](const auto& info) {
                           std::string s = info.param.model;
                           for (char& c : s) if (c == '-') c = '_';
                           return s;
                         });

// llama.cpp's K-quant mixes of one f16 llama (256 wide), each product with q8_K activations and
// llama.cpp's AVX2 float steps (core/kquant.h dot_k_q8_K): in this random model one layer-0 K value
// sits one f32 ulp from an f16 rounding midpoint of the cache, so any other order of the q4_K
// product's float steps moves whole positions by 1e-2 (docs/testing.md). Worst over the generic,
// avx2 and avx512 tables (the K products are bit-identical in all three): Q2_K 8.1e-8, Q4_K_M
// 7.7e-8, Q5_K_M 1.2e-7, Q6_K 6.9e-8; bounds 10x that, rounded up. Q3_K_M is not here: 22 of its
// 23 positions agree (19 bit for bit) but position 20 is off by 8e-3 (1.75e-3 over all, fixture
// 1e-3), a last-layer rounding not yet found (llama.cpp's SiLU exp is not it).
INSTANTIATE_TEST_SUITE_P(KQuant, LogitsParity,
                         ::testing::Values(
                             // worst 3.02e-3 (llama.cpp rounds activations to f16 for f16 weights).
                             ParityCase{"llama256-f16", 5e-3, 5e-3, "kquant"},
                             ParityCase{"llama256-q2_k", 1e-3, 8.1e-7, "kquant"},
                             ParityCase{"llama256-q4_k_m", 1e-3, 7.7e-7, "kquant"},
                             ParityCase{"llama256-q5_k_m", 1e-3, 1.3e-6, "kquant"},
                             ParityCase{"llama256-q6_k", 1e-3, 7e-7, "kquant"}),
                         [](const auto& info) {
                           std::string s = info.param.model;
                           for (char& c : s) if (c == '-') c = '_';
                           return s;
                         });

// One prefill equals token-by-token decoding through the cache, for every family: bit for bit
// (rel L2 0 for all four on generic / avx2 / avx512, Intel Xeon AVX-512 VNNI; GGUF models sum
// each output row by row in one order, whatever the number of tokens).
TEST(Lm, PrefillEqualsIncrementalDecode) {
  for (const char* m : {"llama-q8_0", "qwen2-f32", "phi2-f32", "stablelm-f32"}) {
    SCOPED_TRACE(m);
    io::GgufFile f = io::GgufFile::open(kPeer + "tiny-" + std::string(m) + ".gguf");
    auto model = lm::load_gguf(f);
    const std::vector<int32_t> ids = read_array<int32_t>(kPeer + std::string(m) + ".tokens.i32");
    lm::KvCache a(model->config(), 64), b(model->config(), 64);
    const std::vector<float> all = model->forward_ids(ids, a, true).to_vector();
    const int64_t V = model->config().n_vocab;
    // First half as one prefill, the rest one token at a time.
    const size_t half = ids.size() / 2;
    std::vector<int32_t> head(ids.begin(), ids.begin() + long(half));
    std::vector<float> got = model->forward_ids(head, b, true).to_vector();
    for (size_t i = half; i < ids.size(); ++i) {
      const std::vector<float> row = model->forward_ids({ids[i]}, b, false).to_vector();
      got.insert(got.end(), row.begin(), row.end());
    }
    EXPECT_EQ(b.n_past(), int64_t(ids.size()));
    ASSERT_EQ(got.size(), all.size());
    const double e = rel_l2(got, all);
    std::printf("%s: prefill vs one token at a time, rel L2 %.3g\n", m, e);
    EXPECT_EQ(e, 0.0);
    (void)V;
  }
}

TEST(Lm, ContextOverflowIsAnError) {
  io::GgufFile f = io::GgufFile::open(kPeer + "tiny-llama-f32.gguf");
  auto model = lm::load_gguf(f);
  lm::KvCache cache(model->config(), 8);
  model->forward_ids({1, 2, 3, 4, 5, 6}, cache, false);
  try {
    model->forward_ids({7, 8, 9}, cache, false);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exceed the context of 8"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cache.n_past(), 6);  // nothing written
  EXPECT_THROW(model->forward_ids({40000}, cache, false), Error);  // token id outside the vocabulary
  EXPECT_THROW(lm::load_gguf(io::GgufFile::open(kPeer + "tiny-mmproj-clip-f32.gguf")), Error);
}
