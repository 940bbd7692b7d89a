// Language-model speed with `ocellus synth` models of TinyLlama-1.1B's shape (f16, q8_0, q4_0,
// and llama.cpp's Q4_K_M and Q6_K mixes quantized from the f16 one; written once into
// build/bench-models/): prefill of a 512-token prompt (tokens/s and GFLOP/s
// against the sgemm peak) and decode (tokens/s, and weight bytes read per second against the
// memory bandwidth measured next to it). Weights are memory-mapped from the file, as a user's
// model is (q4_0 matrices also repacked in memory for decode).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "ceilings.h"
#include "ocellus/io/gguf.h"
#include "ocellus/lm/lm.h"

using namespace ocellus;

namespace {

struct Loaded {
  std::unique_ptr<lm::LanguageModel> model;
  double weight_bytes = 0;   // matrices read per decoded token
  double matmul_params = 0;  // multiply-adds per token in the matrices
};

// The files the benchmarks take (their argument: an index into this list).
const char* const kFileTypes[] = {"f16", "q8_0", "q4_0", "Q4_K_M", "Q6_K"};
constexpr int64_t kF16 = 0, kQ8 = 1, kQ4 = 2, kQ4KM = 3, kQ6K = 4;

const Loaded& tinyllama(const std::string& ftype) {
  static std::map<std::string, Loaded> cache;
  auto it = cache.find(ftype);
  if (it != cache.end()) return it->second;
  const std::string path = bench::synth_model("tinyllama-1.1b", ftype.c_str());
  Loaded l;
  l.model = lm::load_gguf(io::GgufFile::open(path));
  auto add = [&](const ops::PreparedWeight& w) {
    if (!w.tensor().defined()) return;
    l.weight_bytes += double(w.tensor().nbytes());
    l.matmul_params += double(w.tensor().numel());
  };
  for (const lm::LayerWeights& L : l.model->weights().layers)
    for (const ops::PreparedWeight* w : {&L.wq, &L.wk, &L.wv, &L.wqkv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) add(*w);
  add(l.model->weights().output);
  {  // one token touches every weight: page faults of the mapping are not timed
    lm::KvCache warm(l.model->config(), 1);
    l.model->forward_ids({1}, warm, false);
  }
  return cache.emplace(ftype, std::move(l)).first->second;
}

void BM_Prefill512(benchmark::State& state) {
  const std::string t = kFileTypes[state.range(0)];
  const Loaded& m = tinyllama(t);
  std::vector<int32_t> ids(512);
  for (int i = 0; i < 512; ++i) ids[size_t(i)] = 1 + (i * 7919) % 31999;
  for (auto _ : state) {
    lm::KvCache cache(m.model->config(), 512);
    benchmark::DoNotOptimize(m.model->forward_ids(ids, cache, false));
  }
  state.SetLabel(t);
  state.counters["tokens/s"] = benchmark::Counter(512, benchmark::Counter::kIsIterationInvariantRate);
  const double flops = 2.0 * m.matmul_params * 512;
  state.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["of_gemm_peak"] = benchmark::Counter(flops / (bench::ceilings().gemm_gflops * 1e9),
                                                      benchmark::Counter::kIsIterationInvariantRate);
}

// 64 tokens decoded after a 16-token prompt, per iteration. Each iteration is paired with the
// bandwidth measured right before it (bench::BandwidthPairs, untimed, as is the prompt's
// prefill): the ratios are medians over the pairs, as for BM_Matvec (this VM's bandwidth
// drifts with its neighbours' load).
void BM_Decode(benchmark::State& state) {
  const std::string t = kFileTypes[state.range(0)];
  const Loaded& m = tinyllama(t);
  bench::BandwidthPairs pairs;
  double best = 1e30;
  for (auto _ : state) {
    state.PauseTiming();
    pairs.before();
    lm::KvCache cache(m.model->config(), 128);
    std::vector<int32_t> prompt(16, 2);
    m.model->forward_ids(prompt, cache, false);
    state.ResumeTiming();
    const auto t0 = std::chrono::steady_clock::now();
    int32_t id = 3;
    for (int i = 0; i < 64; ++i) {
      const Tensor l = m.model->forward_ids({id}, cache, false);
      id = 1 + int32_t(l.data<float>()[0] > 0);
    }
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, sec);
    pairs.after(64 * m.weight_bytes / sec / 1e9);
  }
  state.SetLabel(t);
  state.counters["tokens/s"] = benchmark::Counter(64, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["best_tokens/s"] = 64 / best;
  pairs.report(state);
}

// Batched decoding as `ocellus serve --parallel N` runs it: N sequences (each after a 16-token
// prompt, untimed) decode 32 tokens each, every step one forward_batch over all of them; the
// aggregate tokens/s, and its ratio to one stream's (the first run, Arg 1, of the same binary).
void BM_DecodeBatch(benchmark::State& state) {
  const Loaded& m = tinyllama("q4_0");
  const int64_t streams = state.range(0);
  static double one_stream = 0;
  double best = 1e30;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<lm::KvCache> caches;
    std::vector<lm::KvCache*> ptrs;
    for (int64_t s = 0; s < streams; ++s) caches.emplace_back(m.model->config(), 64);
    for (int64_t s = 0; s < streams; ++s) {
      m.model->forward_ids(std::vector<int32_t>(16, int32_t(2 + s)), caches[size_t(s)], false);
      ptrs.push_back(&caches[size_t(s)]);
    }
    state.ResumeTiming();
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<int32_t> ids(size_t(streams), 3);
    for (int i = 0; i < 32; ++i) {
      const Tensor l = m.model->forward_batch(m.model->embed(ids), ptrs, std::vector<int64_t>(size_t(streams), 1));
      for (int64_t s = 0; s < streams; ++s) ids[size_t(s)] = 1 + int32_t(l.data<float>()[s * l.dim(1)] > 0);
    }
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double rate = double(32 * streams) / best;
  if (streams == 1) one_stream = rate;
  state.SetLabel("q4_0");
  state.counters["best_tokens/s"] = rate;
  if (one_stream > 0) state.counters["x_one_stream"] = rate / one_stream;
}

}  // namespace

BENCHMARK(BM_Prefill512)->ArgName("file")->Arg(kF16)->Arg(kQ8)->Arg(kQ4)->Arg(kQ4KM)->Arg(kQ6K)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);
BENCHMARK(BM_DecodeBatch)->ArgName("streams")->Arg(1)->Arg(4)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5);
BENCHMARK(BM_Decode)->ArgName("file")->Arg(kF16)->Arg(kQ8)->Arg(kQ4)->Arg(kQ4KM)->Arg(kQ6K)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(9);
