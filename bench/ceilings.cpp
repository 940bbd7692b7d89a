#include "ceilings.h"

#include <omp.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "ocellus/core/cpu.h"
#include "ocellus/core/dtype.h"
#include "ocellus/core/threads.h"
#include "ocellus/io/gguf_convert.h"
#include "ocellus/model/synth.h"
#include "ocellus/core/tensor.h"
#include "ocellus/ops/matmul.h"

namespace ocellus::bench {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Best of several passes, as benchmarks report their best sustained rate too.
template <typename Fn>
double best_seconds(int reps, Fn&& fn) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    fn();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

// Best rate of `reps` parallel copies of `bytes` from src to dst, counting bytes read + written.
double copy_gbs(const float* src, float* dst, size_t bytes, int reps) {
  const size_t n = bytes / sizeof(float);
  const int nt = num_threads();
  const double t = best_seconds(reps, [&] {
#pragma omp parallel num_threads(nt)
    {
      const int id = omp_get_thread_num(), T = omp_get_num_threads();
      const size_t lo = n * id / T, hi = n * (id + 1) / T;
      std::memcpy(dst + lo, src + lo, (hi - lo) * sizeof(float));
    }
  });
  return 2.0 * double(bytes) / t / 1e9;
}

// Best rate of `reps` parallel streaming reads of `bytes` at src.
double read_gbs(const float* src, size_t bytes, int reps) {
  const size_t n = bytes / sizeof(float);
  const int nt = num_threads();
  volatile float sink = 0;
  const double t = best_seconds(reps, [&] {
    float total = 0;
#pragma omp parallel for num_threads(nt) reduction(+ : total) schedule(static)
    for (int64_t blk = 0; blk < int64_t(n / 4096); ++blk) {
      // 32 independent partial sums: enough adds in flight that the loads, not the adder's
      // latency, set the pace even in the portable (SSE2) build of this file
      float s[32] = {};
      const float* p = src + blk * 4096;
      for (int i = 0; i < 4096; i += 32)
        for (int j = 0; j < 32; ++j) s[j] += p[i + j];
      for (int j = 0; j < 32; ++j) total += s[j];
    }
    sink = total;
  });
  (void)sink;
  return double(bytes) / t / 1e9;
}

Ceilings measure() {
  Ceilings c;
  const size_t bytes = size_t(1) << 30;  // 1 GiB: far past any last-level cache
  const size_t n = bytes / sizeof(float);
  std::vector<float> a(n, 1.0f), b(n, 0.0f);
  const int nt = num_threads();
  c.read_gbs = read_gbs(a.data(), bytes, 3);
  c.copy_gbs = copy_gbs(a.data(), b.data(), bytes, 3);
  // Peak: the best of several passes over large square products (the first passes pay for
  // thread start-up and page faults, so they only warm up).
  const int64_t s = 2048;
  Tensor x = Tensor::full({s, s}, 0.5f), w = Tensor::full({s, s}, 0.25f);
  for (int r = 0; r < 2; ++r) ops::matmul(x, w);
  const double t = best_seconds(6, [&] { ops::matmul(x, w); });
  c.gemm_gflops = 2.0 * double(s) * s * s / t / 1e9;
  return c;
}

}  // namespace

const Ceilings& ceilings() {
  static const Ceilings c = measure();
  return c;
}

double copy_gbs_now(int reps) {
  static const size_t bytes = size_t(256) << 20;
  static std::vector<float> a(bytes / sizeof(float), 1.0f), b(bytes / sizeof(float), 0.0f);
  return copy_gbs(a.data(), b.data(), bytes, reps);
}

double read_gbs_now(int reps) {
  static const size_t bytes = size_t(512) << 20;
  static std::vector<float> a(bytes / sizeof(float), 1.0f);
  return read_gbs(a.data(), bytes, reps);
}

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
}  // namespace

BandwidthPairs::BandwidthPairs() { copy_gbs_now(1), read_gbs_now(1); }

void BandwidthPairs::before() {
  copy_.push_back(copy_gbs_now());
  read_.push_back(read_gbs_now());
}

void BandwidthPairs::report(benchmark::State& state) const {
  if (gbs_.empty() || gbs_.size() != copy_.size()) return;
  std::vector<double> r_copy, r_read;
  const bool print = std::getenv("OCELLUS_BENCH_PAIRS") != nullptr;
  for (size_t i = 0; i < gbs_.size(); ++i) {
    r_copy.push_back(gbs_[i] / copy_[i]);
    r_read.push_back(gbs_[i] / read_[i]);
    if (print) std::fprintf(stderr, "pair %zu: %.1f GB/s, copy %.1f, read %.1f GB/s\n", i, gbs_[i], copy_[i], read_[i]);
  }
  const double best = *std::max_element(gbs_.begin(), gbs_.end()), best_copy = *std::max_element(copy_.begin(), copy_.end());
  state.counters["best_GB/s"] = best;
  state.counters["copy_GB/s"] = best_copy;
  state.counters["of_copy_bw"] = median(r_copy);
  state.counters["read_GB/s"] = *std::max_element(read_.begin(), read_.end());
  state.counters["of_read_bw"] = median(r_read);
  state.counters["best_of_copy"] = best / best_copy;
}

void print_ceilings() {
  const Ceilings& c = ceilings();
  std::printf("ceilings (%d threads): memory read %.1f GB/s, memory copy %.1f GB/s (read+write), "
              "f32 GEMM peak %.1f GFLOP/s (OpenBLAS sgemm 2048^3, %s kernels)\n",
              num_threads(), c.read_gbs, c.copy_gbs, c.gemm_gflops, blas_core().c_str());
}

std::string synth_model(const std::string& shape, const char* dtype) {
  const std::string dir = OCELLUS_BENCH_MODELS;
  ::mkdir(dir.c_str(), 0755);
  const std::string path = dir + "/" + shape + "-" + dtype + ".gguf";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const std::string name = dtype;
    if (name.find("_K") != std::string::npos) {  // a llama.cpp K mix: quantized from the f16 file
      io::convert_gguf(synth_model(shape, "f16"), path, io::quant_target_from_name(name), false);
      return path;
    }
    model::SynthOptions o;
    o.dtype = dtype_from_name(dtype);
    model::write_synth_model(model::synth_shape(shape), o, path);
  }
  return path;
}

}  // namespace ocellus::bench
