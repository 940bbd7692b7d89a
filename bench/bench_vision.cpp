// Image encode speed with `ocellus synth` towers of CLIP-ViT-L/14-336 and SigLIP-so400m/14-384
// shape (f16 matrices, LLaVA MLP projector; written once into build/bench-models/): one image
// through tower + projector, as `ocellus run` encodes it. GFLOP/s over the whole encode
// (patch embedding, every block's matrices and attention, the projector) against the f32 sgemm
// peak measured in the same run.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "ceilings.h"
#include "ocellus/model/vlm.h"

using namespace ocellus;

namespace {

const model::VisionModel& tower(const std::string& shape) {
  static std::map<std::string, std::unique_ptr<model::VisionModel>> cache;
  auto it = cache.find(shape);
  if (it != cache.end()) return *it->second;
  const std::string path = bench::synth_model(shape, "f16");
  return *cache.emplace(shape, model::load_mmproj(path)).first->second;
}

// Multiply-adds x 2 of one image's encode.
double encode_flops(const model::VisionModel& vm) {
  const vision::VitConfig& c = vm.config();
  const double n = double(c.n_positions()), d = double(c.n_embd), ff = double(c.n_ff), p = double(c.patch_size);
  double f = 2.0 * double(c.n_patches()) * 3 * p * p * d;                    // patch embedding
  f += double(c.n_layer_run) * (2.0 * n * (4 * d * d + 2 * d * ff) + 4.0 * n * n * d);  // blocks
  const double nt = double(c.n_features()), e = double(vm.n_embd_out());
  f += 2.0 * nt * (d * e + e * e);                                           // MLP projector
  return f;
}

void BM_Encode(benchmark::State& state, const std::string& shape) {
  const model::VisionModel& vm = tower(shape);
  const int64_t S = vm.config().image_size;
  Tensor img = Tensor::empty({3, S, S});
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (int64_t i = 0; i < img.numel(); ++i) img.data<float>()[i] = nd(rng);
  vm.embed({img});  // warm: pages of the mapping, converted tiles
  const double peak = bench::ceilings().gemm_gflops;  // measured before the timed loop
  double best = 1e30;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(vm.embed({img}));
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double flops = encode_flops(vm);
  state.counters["best_ms"] = best * 1e3;
  state.counters["GFLOP"] = flops / 1e9;
  state.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["best_GFLOP/s"] = flops / 1e9 / best;
  state.counters["gemm_peak"] = peak;
  state.counters["of_gemm_peak"] = flops / 1e9 / best / peak;
  state.counters["tokens"] = double(vm.n_tokens_per_image());
}

BENCHMARK_CAPTURE(BM_Encode, clip_vit_l_14_336_f16, std::string("clip-vit-l-14-336"))
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK_CAPTURE(BM_Encode, siglip_so400m_14_384_f16, std::string("siglip-so400m-14-384"))
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

}  // namespace
