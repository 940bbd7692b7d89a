// LlamaFusion's image side: a 3x3 convolution at the VAE's shapes (forward, and forward +
// backward as training runs it), one VAE training step, and sampling one scene, as GFLOP/s
// against the f32 sgemm peak measured in the same run. The convolution is an im2col copy and one GEMM, so the GEMM
// peak is its ceiling.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>

#include "ceilings.h"
#include "ocellus/gen/fusion_model.h"
#include "ocellus/gen/vae.h"
#include "ocellus/io/file.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/model/synth.h"
#include "ocellus/ops/feature_map.h"

using namespace ocellus;

namespace {

Tensor normal(const Shape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
  return t;
}

void report(benchmark::State& state, double flops, double best) {
  const double peak = bench::ceilings().gemm_gflops;
  state.counters["best_ms"] = best * 1e3;
  state.counters["best_GFLOP/s"] = flops / 1e9 / best;
  state.counters["gemm_peak"] = peak;
  state.counters["of_gemm_peak"] = flops / 1e9 / best / peak;
}

// Batch 8, side S, C -> C channels, 3x3, stride 1, padding 1; range(2): with the backward.
void BM_Conv2d(benchmark::State& state) {
  const int64_t S = state.range(0), C = state.range(1), B = 8;
  const bool backward = state.range(2) != 0;
  const Tensor x = normal({B, S, S, C}, 1), w = normal({C, 3, 3, C}, 2), b = normal({C}, 3), dy = normal({B, S, S, C}, 4);
  Tensor dx = Tensor::zeros(x.shape()), dw = Tensor::zeros(w.shape()), db = Tensor::zeros(b.shape());
  auto run = [&] {
    benchmark::DoNotOptimize(ops::conv2d(x, w, &b, 1, 1));
    if (backward) ops::conv2d_backward(x, w, dy, 1, 1, &dx, &dw, &db);
  };
  run();
  double best = 1e30;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  report(state, 2.0 * double(B * S * S) * 9.0 * double(C * C) * (backward ? 3.0 : 1.0), best);
  state.SetLabel(std::to_string(S) + "x" + std::to_string(S) + ", " + std::to_string(C) + " -> " + std::to_string(C) +
                 ", batch 8, forward" + (backward ? " + backward" : ""));
}
BENCHMARK(BM_Conv2d)->Args({56, 32, 0})->Args({56, 32, 1})->Args({28, 64, 0})->Args({28, 64, 1})->Args({14, 64, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5);

// One training step of the VAE that recipes use (32 / 64 / 64 channels, 56 px) on a batch of 8:
// every convolution's forward and backward, group norms, activations.
void BM_VaeStep(benchmark::State& state) {
  gen::VaeConfig c;
  std::vector<ag::Var> params;
  const gen::Vae<nn::Train> w = gen::load_vae(nn::new_param_maker(params, 1), c);
  const Tensor x = normal({8, c.sample_size, c.sample_size, c.in_channels}, 1);
  const Tensor e = normal({8, c.latent_size(), c.latent_size(), c.latent_channels}, 2);
  auto step = [&] { ag::Tape::current().backward(gen::vae_loss(c, w, x, e, 1e-4f)); };
  step();
  double best = 1e30;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  // Convolution multiply-adds of one image's forward (encoder + decoder), times 3 for the backward.
  double f = 0;
  auto conv = [&](int64_t side, int64_t cin, int64_t cout, int64_t k) { f += 2.0 * double(side * side * cin * cout * k * k); };
  const std::vector<int64_t>& ch = c.block_out_channels;
  auto res = [&](int64_t side, int64_t cin, int64_t cout) {
    conv(side, cin, cout, 3), conv(side, cout, cout, 3);
    if (cin != cout) conv(side, cin, cout, 1);
  };
  int64_t side = c.sample_size;
  conv(side, c.in_channels, ch[0], 3);
  for (size_t i = 0; i < ch.size(); ++i) {
    res(side, ch[i == 0 ? 0 : i - 1], ch[i]);
    if (i + 1 < ch.size()) side /= 2, conv(side, ch[i], ch[i], 3);
  }
  res(side, ch.back(), ch.back()), conv(side, ch.back(), 2 * c.latent_channels, 3);
  conv(side, c.latent_channels, ch.back(), 3), res(side, ch.back(), ch.back());
  for (size_t i = 0; i < ch.size(); ++i) {
    const size_t lvl = ch.size() - 1 - i;
    res(side, i == 0 ? ch.back() : ch[lvl + 1], ch[lvl]);
    if (lvl > 0) side *= 2, conv(side, ch[lvl], ch[lvl], 3);
  }
  conv(side, ch[0], c.in_channels, 3);
  report(state, 8.0 * 3.0 * f, best);
  state.counters["images/s"] = 8.0 / best;
  state.SetLabel("32 / 64 / 64 channels, 56 px, batch 8");
}
BENCHMARK(BM_VaeStep)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

// Sampling one scene with LlamaFusion at the bundled model's sizes (llama 256 x 4 layers, 4 / 2
// heads; a 14 x 14 x 4 latent, U-Net 64 / 128: 49 image positions) with random weights: 50 DDIM
// steps with guidance (two denoiser calls a step) and the VAE's decode. The denoiser's
// multiply-adds: the image modules' matrices and attention over the caption and the image, and
// the U-Net's convolutions and projections.
void BM_FusionSample(benchmark::State& state) {
  const std::string dir = (std::filesystem::temp_directory_path() / "ocellus_bench_fusion").string();
  std::filesystem::create_directories(dir + "/vae");
  model::SynthShape shape = model::synth_shape("tiny-llama");
  shape.n_embd = 256, shape.n_ff = 688, shape.n_layer = 4, shape.n_head = 4, shape.n_head_kv = 2, shape.n_rot = 64;
  model::SynthOptions so;
  so.dtype = DType::F32;
  model::write_synth_model(shape, so, dir + "/base.gguf");
  gen::VaeConfig vc;
  std::vector<ag::Var> vp;
  gen::load_vae(nn::new_param_maker(vp, 1), vc);
  io::write_text_file_atomically(dir + "/vae/config.json", gen::vae_config_json(vc));
  io::write_safetensors(dir + "/vae/model.safetensors", ag::named_values(vp));
  gen::FusionConfig fc;
  fc.base = dir + "/base.gguf", fc.vae = dir + "/vae";
  {
    const io::GgufFile g = io::GgufFile::open(fc.base);
    gen::TrainableFusion(fc, g, vc, 1).save(dir + "/model", fc);
  }
  const gen::FusionModel m(dir + "/model");
  const std::string caption = "a sneaker in the top left and a bag in the bottom right";
  gen::ImageSampling s;  // 50 DDIM steps, guidance 3
  double best = 1e30;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(gen::generate_image(m, caption, s));
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const gen::UNetConfig& u = m.unet_config();
  const lm::LmConfig& c = m.lm().config();
  const double P = double(u.n_positions()), ctx = double(gen::caption_before(m.tokenizer(), caption).size()) + 1 + P;
  const double q = double(c.n_head * c.head_dim), kv = double(c.n_head_kv * c.head_dim), d = double(c.n_embd);
  double f = double(c.n_layer) * 2.0 * P * (d * (q + 2 * kv) + q * d + 3 * d * double(c.n_ff) + 2 * ctx * q);
  auto conv = [&](int64_t side, int64_t cin, int64_t cout, int64_t k) { f += 2.0 * double(side * side * cin * cout * k * k); };
  auto res = [&](int64_t side, int64_t cin, int64_t cout) {
    conv(side, cin, cout, 3), conv(side, cout, cout, 3);
    if (cin != cout) conv(side, cin, cout, 1);
  };
  const std::vector<int64_t>& ch = u.block_out_channels;
  int64_t side = u.latent_size;
  conv(side, u.latent_channels, ch[0], 3);
  for (size_t i = 0; i < ch.size(); ++i) {
    res(side, ch[i == 0 ? 0 : i - 1], ch[i]);
    if (i + 1 < ch.size()) side /= 2, conv(side, ch[i], ch[i], 3);
  }
  f += 2.0 * 2.0 * P * d * double(ch.back());  // proj_in, proj_out
  for (size_t i = 0; i < ch.size(); ++i) {
    const size_t lvl = ch.size() - 1 - i;
    res(side, 2 * ch[lvl], ch[lvl]);
    if (lvl > 0) side *= 2, conv(side, ch[lvl], ch[lvl - 1], 3);
  }
  conv(side, ch[0], u.latent_channels, 3);
  const double calls = 2.0 * double(s.steps);
  report(state, calls * f, best);  // the VAE decode's time is in best, not its flops (a few % of the whole)
  state.counters["s/scene"] = best;
  state.counters["denoiser_MFLOP/call"] = f / 1e6;
  state.SetLabel("one scene, 50 DDIM steps with guidance, the bundled sizes");
}
BENCHMARK(BM_FusionSample)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);

}  // namespace
