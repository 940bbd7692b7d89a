// Training speed: one optimizer step (forward + backward of every sample of the batch, gradient
// clipping, AdamW) of a small LLaVA-style VLM (llama text model d=256, 4 layers, 4 heads / 2 KV
// heads, vocabulary 4096; MLP connector from 64 cached 384-wide image features; 64 image rows +
// 192 text tokens per sequence, batch 4, everything but the tower trainable), timed in ocellus
// (the batch stacked into one pass, as the trainer runs it) and in PyTorch (Debian's python3-torch, the re-statement in tests/reference/torch_ref.py) on
// the same weights, in the same run, with the same thread count. PyTorch runs the step two ways
// (the batch as one [B, n] tensor, and one sequence at a time); the ratio is against the faster
// (target: ocellus >= 1.5x PyTorch). Both are also put against the f32 GEMM peak measured in the
// same run: GFLOP/s of the work a step needs (3x the forward's: the 6·N·D convention), with the
// output layer counted only at the rows that carry a loss, since no other row needs logits.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "ceilings.h"
#include "ocellus/autograd/autograd.h"
#include "ocellus/core/threads.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/model/vlm_train.h"
#include "ocellus/train/optim.h"

using namespace ocellus;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kV = 4096, kD = 256, kFF = 688, kL = 4, kH = 4, kHkv = 2, kDv = 384, kNf = 64, kText = 192, kBatch = 4;

Tensor randn(const Shape& s, std::mt19937& rng, float scale) {
  std::normal_distribution<float> n(0.0f, scale);
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = n(rng);
  return t;
}

std::string write_model() {
  const std::string dir = std::string(OCELLUS_BENCH_MODELS) + "/train-vlm";
  if (fs::exists(dir + "/config.json")) return dir;
  fs::create_directories(dir);
  std::mt19937 rng(7);
  std::vector<std::pair<std::string, Tensor>> t;
  auto ones = [&](int64_t d) { return Tensor::full({d}, 1.0f); };
  t.push_back({"language_model.model.embed_tokens.weight", randn({kV, kD}, rng, 0.02f)});
  const int64_t kv = kHkv * kD / kH;
  for (int l = 0; l < kL; ++l) {
    const std::string p = "language_model.model.layers." + std::to_string(l) + ".";
    t.push_back({p + "input_layernorm.weight", ones(kD)});
    t.push_back({p + "self_attn.q_proj.weight", randn({kD, kD}, rng, 0.02f)});
    t.push_back({p + "self_attn.k_proj.weight", randn({kv, kD}, rng, 0.02f)});
    t.push_back({p + "self_attn.v_proj.weight", randn({kv, kD}, rng, 0.02f)});
    t.push_back({p + "self_attn.o_proj.weight", randn({kD, kD}, rng, 0.02f)});
    t.push_back({p + "post_attention_layernorm.weight", ones(kD)});
    t.push_back({p + "mlp.gate_proj.weight", randn({kFF, kD}, rng, 0.02f)});
    t.push_back({p + "mlp.up_proj.weight", randn({kFF, kD}, rng, 0.02f)});
    t.push_back({p + "mlp.down_proj.weight", randn({kD, kFF}, rng, 0.02f)});
  }
  t.push_back({"language_model.model.norm.weight", ones(kD)});
  t.push_back({"language_model.lm_head.weight", randn({kV, kD}, rng, 0.02f)});
  t.push_back({"multi_modal_projector.linear_1.weight", randn({kD, kDv}, rng, 0.02f)});
  t.push_back({"multi_modal_projector.linear_1.bias", Tensor::zeros({kD})});
  t.push_back({"multi_modal_projector.linear_2.weight", randn({kD, kD}, rng, 0.02f)});
  t.push_back({"multi_modal_projector.linear_2.bias", Tensor::zeros({kD})});
  io::write_safetensors(dir + "/model.safetensors", t);
  nlohmann::json c;
  c["model_type"] = "llava";
  c["text_config"] = {{"model_type", "llama"}, {"hidden_size", kD}, {"intermediate_size", kFF}, {"num_hidden_layers", kL},
                      {"num_attention_heads", kH}, {"num_key_value_heads", kHkv}, {"vocab_size", kV},
                      {"max_position_embeddings", 1024}, {"rms_norm_eps", 1e-5}};
  c["vision_config"] = {{"model_type", "clip_vision_model"}, {"hidden_size", kDv}, {"intermediate_size", 1536},
                        {"num_hidden_layers", 2}, {"num_attention_heads", 6}, {"image_size", 112}, {"patch_size", 14}};
  c["projector_hidden_act"] = "gelu";
  std::ofstream(dir + "/config.json") << c.dump(2);
  return dir;
}

model::TrainSample sample() {
  model::TrainSample s;
  std::mt19937 rng(3);
  s.ids.push_back(1);
  s.ids.insert(s.ids.end(), kNf, -1);
  for (int64_t i = 0; i < kText - 1; ++i) s.ids.push_back(int32_t(2 + rng() % (kV - 2)));
  s.mask.assign(s.ids.size(), 0);
  for (size_t i = s.ids.size() / 2; i < s.ids.size(); ++i) s.mask[i] = 1;
  s.features.push_back(randn({kNf, kDv}, rng, 1.0f));
  return s;
}

// FLOPs of one step's necessary work: 3 x the forward's multiply-adds x 2.
double step_flops(const model::TrainSample& s) {
  const double n = double(s.ids.size()), kv = double(kHkv * kD / kH);
  double counted = 0;
  for (size_t i = 0; i + 1 < s.ids.size(); ++i) counted += s.mask[i + 1] && s.ids[i + 1] >= 0;
  const double layer = kD * kD * 2.0 + 2.0 * kD * kv + 3.0 * kD * kFF;  // q, o; k, v; gate, up, down
  const double attn = double(kD) * n * (n + 1);                          // causal QKᵀ and PV, every head
  const double macs = n * kL * layer + kL * attn + counted * kV * kD + kNf * (double(kDv) * kD + double(kD) * kD);
  return 3.0 * 2.0 * macs * kBatch;
}

// PyTorch's best step times, batched ([B, n] tensors) and one sequence at a time; 0 when it
// could not run.
std::pair<double, double> torch_step_seconds(const std::string& dir, const model::TrainSample& s) {
  nlohmann::json b = {{"ids", s.ids}, {"mask", s.mask}, {"n_features", kNf}, {"batch", kBatch},
                      {"threads", num_threads()}, {"warmup", 1}, {"steps", 8}};
  const std::string bp = dir + "/bench-batch.json", out = dir + "/bench-torch.f32";
  std::ofstream(bp) << b.dump();
  const char* py = std::getenv("OCELLUS_PYTHON");
  const std::string cmd = std::string(py ? py : "/usr/bin/python3") + " " OCELLUS_TORCH_REF " vlm_train_bench " + dir + " " + bp + " " + out;
  if (std::system(cmd.c_str()) != 0) return {0, 0};
  float sec[2] = {0, 0};
  std::FILE* f = std::fopen(out.c_str(), "rb");
  if (!f) return {0, 0};
  const size_t got = std::fread(sec, 4, 2, f);
  std::fclose(f);
  return got == 2 ? std::pair<double, double>{sec[0], sec[1]} : std::pair<double, double>{0, 0};
}

void BM_TrainStep(benchmark::State& state) {
  const std::string dir = write_model();
  const io::SafetensorsModel st = io::SafetensorsModel::open(dir);
  model::TrainableVlm vlm(model::train_config_from_hf(io::read_hf_config(dir)), io::safetensors_source(st, dir));
  const model::TrainSample s = sample();
  train::AdamW opt({train::ParamGroup{vlm.params(), 1e-4, 0.0}});
  // OCELLUS_PROFILE=1: the forward's and the backward's time per op kind, averaged over the iterations after the
  // first (which also pays for first-touch memory), on stderr.
  const bool profile = std::getenv("OCELLUS_PROFILE") && std::string(std::getenv("OCELLUS_PROFILE")) == "1";
  int64_t iter = 0;
  double best = 1e30, fwd = 0, bwd = 0, upd = 0;  // the best step's parts
  using clock = std::chrono::steady_clock;
  auto secs = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
  for (auto _ : state) {
    if (iter++ == 1) ag::Tape::current().set_profiling(profile);
    const auto t0 = clock::now();
    opt.zero_grad();
    ag::Tape::current().mark();
    const ag::Var loss = vlm.loss_batch(std::vector<model::TrainSample>(size_t(kBatch), s));
    const auto t1 = clock::now();
    ag::Tape::current().backward(loss);
    const auto t2 = clock::now();
    train::clip_grad_norm(vlm.params(), 1.0);
    opt.step();
    const auto t3 = clock::now();
    if (secs(t0, t3) < best) best = secs(t0, t3), fwd = secs(t0, t1), bwd = secs(t1, t2), upd = secs(t2, t3);
  }
  if (profile)
    for (const auto& [op, sec] : ag::Tape::current().profile())
      std::fprintf(stderr, "%-30s %8.2f ms per step\n", op.c_str(), sec * 1e3 / double(state.iterations() - 1));
  ag::Tape::current().set_profiling(false);
  state.counters["forward_ms"] = fwd * 1e3;
  state.counters["backward_ms"] = bwd * 1e3;
  state.counters["update_ms"] = upd * 1e3;
  const double tokens = double(kBatch) * double(s.ids.size());
  const auto [batched, looped] = torch_step_seconds(dir, s);
  const double torch_s = std::min(batched, looped);  // compared with PyTorch's faster way
  state.counters["tokens/s"] = tokens / best;
  state.counters["torch_tokens/s"] = torch_s > 0 ? tokens / torch_s : 0;
  state.counters["x_torch"] = torch_s > 0 ? torch_s / best : 0;
  state.counters["ms/step"] = best * 1e3;
  const double flops = step_flops(s), peak = bench::ceilings().gemm_gflops * 1e9;
  state.counters["GFLOP/s"] = flops / best / 1e9;
  state.counters["of_gemm_peak"] = flops / best / peak;
  state.counters["torch_of_gemm_peak"] = torch_s > 0 ? flops / torch_s / peak : 0;
  state.counters["torch_batched_ms"] = batched * 1e3;
  state.counters["torch_looped_ms"] = looped * 1e3;
}

}  // namespace

BENCHMARK(BM_TrainStep)->Unit(benchmark::kMillisecond)->Iterations(10)->UseRealTime();
