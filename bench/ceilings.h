#pragma once
// The machine's own ceilings, measured in the same run as the benchmarks that are compared with
// them: memory bandwidth (a large read, a large copy) and f32 GEMM peak (OpenBLAS, large square).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

namespace ocellus::bench {

struct Ceilings {
  double read_gbs = 0;   // GB/s streaming reads of a buffer far larger than the caches
  double copy_gbs = 0;   // GB/s of a large copy, bytes read + bytes written (STREAM convention)
  double gemm_gflops = 0;  // f32 sgemm 2048^3 through OpenBLAS
};

const Ceilings& ceilings();  // measured once, on first use
void print_ceilings();

// Copy bandwidth measured now (256 MiB, best of `reps`, ~10 ms each). This machine's bandwidth
// drifts with its neighbours' load, so memory-bound benchmarks compare with a copy measured
// next to them, not only with the figure taken at start-up.
double copy_gbs_now(int reps = 3);
double read_gbs_now(int reps = 3);  // streaming read, 512 MiB, best of `reps`

// A memory-bound benchmark's iterations paired with the machine's bandwidth at that moment:
// before() measures a copy and a read (untimed; each the best of 3 back-to-back: the first after
// a pass or a decode run often measures a quarter of the rate), after() records the iteration's
// GB/s. report() sets best_GB/s, copy_GB/s, read_GB/s (the best of each), of_copy_bw /
// of_read_bw (the median over the pairs of GB/s over that pair's copy / read: a pair shares
// its moment's bandwidth) and best_of_copy (best over best, the older convention).
// OCELLUS_BENCH_PAIRS=1 prints every pair.
struct BandwidthPairs {
  BandwidthPairs();  // touches the copy and read buffers once, outside the pairs
  void before();
  void after(double gbs) { gbs_.push_back(gbs); }
  void report(benchmark::State& state) const;

 private:
  std::vector<double> gbs_, copy_, read_;
};

// Path of an `ocellus synth` model of `shape` with `dtype` matrices in build/bench-models/,
// written on first use (later runs reuse the file).
std::string synth_model(const std::string& shape, const char* dtype);

}  // namespace ocellus::bench
