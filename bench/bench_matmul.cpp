// Matrix products: f32 GEMM at transformer shapes against the sgemm peak, and the decode step's
// matrix-vector products with f16 / q8_0 / q4_0 weights against memory bandwidth.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "ceilings.h"
#include "ocellus/core/kquant.h"
#include "ocellus/core/tensor.h"
#include "ocellus/core/threads.h"
#include "ocellus/ops/matmul.h"
#include "ops/kernels/kernels.h"

using namespace ocellus;

namespace {

Tensor random_tensor(const Shape& s, uint32_t seed) {
  Tensor t = Tensor::empty(s);
  uint32_t state = seed * 2654435761u + 1;
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    p[i] = float(int32_t(state >> 8) - (1 << 23)) / float(1 << 23);
  }
  return t;
}

// A weight matrix of dtype t: random values quantized, or for the K-quants (which ocellus does
// not write yet) random blocks with small f16 super-block scales. Speed is what is measured.
Tensor random_weights(int64_t m, int64_t k, DType t, uint32_t seed) {
  if (!is_k_quant(t)) return random_tensor({m, k}, seed).to(t);
  Tensor w = Tensor::empty({m, k}, t);
  uint32_t state = seed * 2654435761u + 1;
  for (size_t i = 0; i < w.nbytes(); ++i) state = state * 1664525u + 1013904223u, w.raw()[i] = uint8_t(state >> 24);
  const uint16_t d = f32_to_fp16(1e-3f);
  const size_t bb = size_t(dtype_info(t).block_bytes);
  for (size_t b = 0; b < w.nbytes() / bb; ++b) {
    uint8_t* blk = w.raw() + b * bb;
    if (t == DType::Q4_K) reinterpret_cast<BlockQ4K*>(blk)->d = d, reinterpret_cast<BlockQ4K*>(blk)->dmin = d;
    if (t == DType::Q6_K) reinterpret_cast<BlockQ6K*>(blk)->d = d;
  }
  return w;
}

// y[n, m] = x[n, k] · w[m, k]ᵀ, all f32: compute-bound, compared with the sgemm peak.
void BM_GemmF32(benchmark::State& state) {
  const int64_t n = state.range(0), k = state.range(1), m = state.range(2);
  Tensor x = random_tensor({n, k}, 1), w = random_tensor({m, k}, 2);
  for (auto _ : state) benchmark::DoNotOptimize(ops::matmul(x, w));
  const double flops = 2.0 * n * k * m;
  state.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["of_peak"] = benchmark::Counter(flops / (bench::ceilings().gemm_gflops * 1e9),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

// Prefill with quantized weights: tiles dequantized to f32, then sgemm.
void BM_GemmQuant(benchmark::State& state) {
  const int64_t n = state.range(0), k = state.range(1), m = state.range(2);
  const DType t = DType(state.range(3));
  Tensor x = random_tensor({n, k}, 1), w = random_tensor({m, k}, 2).to(t);
  state.SetLabel(dtype_name(t));
  for (auto _ : state) benchmark::DoNotOptimize(ops::matmul(x, w));
  const double flops = 2.0 * n * k * m;
  state.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["of_peak"] = benchmark::Counter(flops / (bench::ceilings().gemm_gflops * 1e9),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

// One token's matrix-vector product, x[1, k] · w[m, k]ᵀ. The weights cycle through copies
// totalling over 512 MiB, so every call streams its weights from memory as a decode step does
// (a single 2048x5632 q4_0 matrix, 6.5 MB, would otherwise sit in the last-level cache).
// One iteration is one pass over all copies. This VM's bandwidth drifts with its neighbours'
// load (copies of the same buffer measured 44-70 GB/s within minutes), so each pass is paired
// with the bandwidth measured right before it (bench::BandwidthPairs: the ratios are medians
// over the pairs). GB/s is the mean over all passes.
void BM_Matvec(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1);
  const DType t = DType(state.range(2));
  Tensor proto = random_weights(m, k, t, 3);
  const size_t bytes = proto.nbytes();
  const size_t copies = std::max<size_t>(2, (size_t(512) << 20) / bytes + 1);
  // Prepared as a model's loader prepares its weights (q4_0 is repacked for decode).
  std::vector<ops::PreparedWeight> pool;
  for (size_t i = 0; i < copies; ++i) {
    Tensor c = Tensor::empty({m, k}, t);
    std::memcpy(c.raw(), proto.raw(), bytes);
    pool.emplace_back(c);
  }
  Tensor x = random_tensor({1, k}, 4);
  for (size_t i = 0; i < copies; ++i) benchmark::DoNotOptimize(ops::matmul(x, pool[i]));  // warm-up pass
  bench::BandwidthPairs pairs;
  const double pass_bytes = double(bytes) * double(copies);
  double best_pass = 1e30;
  for (auto _ : state) {
    state.PauseTiming();
    pairs.before();
    state.ResumeTiming();
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < copies; ++i) benchmark::DoNotOptimize(ops::matmul(x, pool[i]));
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best_pass = std::min(best_pass, sec);
    pairs.after(pass_bytes / sec / 1e9);
  }
  state.SetLabel(std::string(dtype_name(t)) + (pool[0].packed() ? " packed" : ""));
  state.counters["us/call"] = best_pass / double(copies) * 1e6;
  state.counters["GB/s"] = benchmark::Counter(pass_bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  pairs.report(state);
}

// The same kernel with one small weight matrix that stays in cache: the kernel's own speed,
// which shows how much headroom it has over the memory-bound case above.
void BM_MatvecCached(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1);
  const DType t = DType(state.range(2));
  ops::PreparedWeight w(random_tensor({m, k}, 3).to(t));
  Tensor x = random_tensor({1, k}, 4);
  for (auto _ : state) benchmark::DoNotOptimize(ops::matmul(x, w));
  state.SetLabel(dtype_name(t));
  state.counters["GB/s"] = benchmark::Counter(double(w.tensor().nbytes()) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

// The quantized dot kernel alone, one thread, one 2048-wide row in L1: cycles of compute per
// block, with no threading, allocation or activation quantization around it.
void BM_DotKernel(benchmark::State& state) {
  const DType t = DType(state.range(0));
  const int64_t k = 2048, nb = k / kQK;
  Tensor w = random_tensor({1, k}, 5).to(t), x = random_tensor({1, k}, 6);
  std::vector<int8_t> qs(k);
  std::vector<float> d(nb), s(nb);
  const Q8Act xq{qs.data(), d.data(), s.data()};
  const kern::Table& K = kern::active();
  K.quantize_q8_act(x.data<float>(), xq, k);
  for (auto _ : state) {
    float v = t == DType::Q8_0 ? K.dot_q8_0(w.raw(), xq, k)
              : t == DType::Q4_0 ? K.dot_q4_0(w.raw(), xq, k)
                                 : K.dot_f16(reinterpret_cast<const uint16_t*>(w.raw()), x.data<float>(), k);
    benchmark::DoNotOptimize(v);
  }
  state.SetLabel(dtype_name(t));
  state.counters["blocks/s"] = benchmark::Counter(double(nb), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] = benchmark::Counter(double(w.nbytes()) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

constexpr int64_t kF32 = int64_t(DType::F32), kF16 = int64_t(DType::F16), kBF16 = int64_t(DType::BF16),
                  kQ8 = int64_t(DType::Q8_0), kQ4 = int64_t(DType::Q4_0), kQ4K = int64_t(DType::Q4_K),
                  kQ6K = int64_t(DType::Q6_K);

}  // namespace

// Transformer shapes: TinyLlama-1.1B (d 2048, ffn 5632) over a 512-token prompt; CLIP-ViT-L/14-336
// (577 tokens, d 1024, ffn 4096).
BENCHMARK(BM_GemmF32)->ArgNames({"n", "k", "m"})
    ->Args({512, 2048, 2048})->Args({512, 2048, 5632})->Args({512, 5632, 2048})
    ->Args({577, 1024, 4096})->Args({577, 4096, 1024})
    ->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GemmQuant)->ArgNames({"n", "k", "m", "dtype"})
    ->Args({512, 2048, 5632, kF16})->Args({512, 2048, 5632, kQ8})->Args({512, 2048, 5632, kQ4})
    ->Args({512, 2048, 5632, kQ4K})->Args({512, 2048, 5632, kQ6K})
    ->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Matvec)->ArgNames({"m", "k", "dtype"})
    ->ArgsProduct({{5632}, {2048}, {kF32, kF16, kBF16, kQ8, kQ4, kQ4K, kQ6K}})
    ->ArgsProduct({{2048}, {5632}, {kF16, kQ8, kQ4, kQ4K, kQ6K}})
    ->ArgsProduct({{8192}, {8192}, {kF16, kQ8, kQ4}})
    ->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(1.0);

BENCHMARK(BM_MatvecCached)->ArgNames({"m", "k", "dtype"})
    ->ArgsProduct({{1024}, {2048}, {kF16, kQ8, kQ4}})->Args({256, 8192, kQ4})->Args({384, 5632, kQ4})
    ->UseRealTime()->Unit(benchmark::kMicrosecond);

BENCHMARK(BM_DotKernel)->ArgName("dtype")->Arg(kF16)->Arg(kQ8)->Arg(kQ4);

// The packed q4_0 tile kernel alone: 16 rows x 2048 columns in L1, one thread.
void BM_TileKernelQ4(benchmark::State& state) {
  const int64_t k = 2048, nb = k / kQK;
  ops::PreparedWeight w(random_tensor({kPackRows, k}, 5).to(DType::Q4_0));
  Tensor x = random_tensor({1, k}, 6);
  std::vector<int8_t> qs(k);
  std::vector<float> d(nb), s(nb);
  const Q8Act xq{qs.data(), d.data(), s.data()};
  const kern::Table& K = kern::active();
  K.quantize_q8_act(x.data<float>(), xq, k);
  float y[kPackRows];
  for (auto _ : state) {
    K.gemv_q4_0x16(w.tiles(), xq, k, y);
    benchmark::DoNotOptimize(y);
  }
  state.counters["blocks/s"] = benchmark::Counter(double(nb * kPackRows), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] = benchmark::Counter(double(w.tensor().nbytes()) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_TileKernelQ4);

// The q4_K / q6_K tile kernels alone (8 rows x 2048 columns in L1, one activation row, one
// thread): GB/s of tile bytes, the compute ceiling of K decode.
void BM_TileKernelK(benchmark::State& state) {
  const DType t = DType(state.range(0));
  const int64_t k = 2048, nbk = k / kQK_K;
  ops::PreparedWeight w(random_tensor({kKPackRows, k}, 5).to(t));
  std::vector<BlockQ8K> xq(static_cast<size_t>(nbk));
  quantize_row_q8_K(random_tensor({1, k}, 6).data<float>(), xq.data(), k);
  const kern::Table& K = kern::active();
  float y[kKPackRows];
  for (auto _ : state) {
    if (t == DType::Q4_K) K.gemm_q4_Kx8(w.tiles_q4_K(), xq.data(), nbk, 1, k, y, 8);
    else K.gemm_q6_Kx8(w.tiles_q6_K(), xq.data(), nbk, 1, k, y, 8);
    benchmark::DoNotOptimize(y);
  }
  state.SetLabel(dtype_name(t));
  state.counters["GB/s"] = benchmark::Counter(double(w.tensor().nbytes()) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_TileKernelK)->ArgName("dtype")->Arg(int64_t(DType::Q4_K))->Arg(int64_t(DType::Q6_K));

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ocellus::bench::print_ceilings();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
