// Tokenizer throughput: MB of UTF-8 text per second on one thread, over ~1 MB made of the
// fixture test strings (English, code, numbers, emoji, Cyrillic, CJK, Khmer, whitespace runs).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>

#include "ocellus/text/tokenizer.h"

using namespace ocellus;

namespace {

std::string corpus() {
  std::ifstream a(std::string(OCELLUS_FIXTURES) + "/tokenizer/ggml-vocab-gpt-2.gguf.inp", std::ios::binary);
  std::string unit((std::istreambuf_iterator<char>(a)), {});
  std::string s;
  while (s.size() < (size_t(1) << 20)) s += unit;
  return s;
}

// ~1 MB of random words (letters, digits, punctuation, some Cyrillic), so nearly every word is
// new: the per-call word cache cannot help, unlike in natural text.
std::string varied() {
  const char* parts[] = {"a", "e", "i", "o", "u", "th", "st", "qu", "ng", "r", "s", "t", "l", "n", "k", "z",
                         "\xd0\xb0", "\xd0\xbd", "7", "42", ",", ".", "'s", "!"};
  uint64_t x = 88172645463325252ull;
  std::string s;
  while (s.size() < (size_t(1) << 20)) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const int len = 1 + int(x % 6);
    s += ' ';
    for (int k = 0; k < len; ++k) s += parts[(x >> (8 + 5 * k)) % 24];
    if (x % 17 == 0) s += '\n';
  }
  return s;
}

void BM_Tokenize(benchmark::State& state, const char* vocab, bool random_words) {
  const text::Tokenizer tok = text::Tokenizer::from_file(std::string(OCELLUS_FIXTURES) + "/tokenizer/" + vocab);
  const std::string text = random_words ? varied() : corpus();
  size_t n = 0;
  for (auto _ : state) n = tok.encode(text, false).size();
  state.counters["MB/s"] = benchmark::Counter(double(text.size()) / 1e6, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens"] = double(n);
}

}  // namespace

BENCHMARK_CAPTURE(BM_Tokenize, llama_spm_fixtures, "ggml-vocab-llama-spm.gguf", false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Tokenize, gpt2_bpe_fixtures, "ggml-vocab-gpt-2.gguf", false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Tokenize, llama_spm_random_words, "ggml-vocab-llama-spm.gguf", true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Tokenize, gpt2_bpe_random_words, "ggml-vocab-gpt-2.gguf", true)->Unit(benchmark::kMillisecond);
