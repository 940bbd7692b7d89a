// A Hugging Face folder written from a fixture GGUF (names mapped, llama's Q/K rows put back in
// rotate-half order, phi2's fused q/k/v split) loads through the Hugging Face path and gives
// the same logits as the GGUF path run with the same (exact) numerics.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "ocellus/io/gguf.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/lm/lm.h"
#include "testutil.h"

using namespace ocellus;

namespace {

const std::string kPeer = std::string(OCELLUS_FIXTURES) + "/peer/";

// llama.cpp's converter stores Q/K rows of each head as interleaved pairs; HF keeps halves.
Tensor unpermute(const Tensor& w, int64_t n_head) {
  const Tensor src = w.contiguous();
  Tensor out = Tensor::empty(w.shape());
  const int64_t rows = w.dim(0), cols = w.dim(1), hd = rows / n_head;
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < hd / 2; ++i)
      for (int64_t s = 0; s < 2; ++s)
        std::memcpy(out.data<float>() + (h * hd + s * hd / 2 + i) * cols, src.data<float>() + (h * hd + 2 * i + s) * cols,
                    size_t(cols) * 4);
  return out;
}

std::string export_hf(const std::string& model, const lm::LanguageModel& m) {
  const lm::LmConfig& c = m.config();
  const std::string dir = test::temp_path("hf_" + model);
  EXPECT_EQ(std::system(("mkdir -p " + dir).c_str()), 0);
  const bool phi = c.arch == "phi2", llama = c.arch == "llama";
  std::vector<std::pair<std::string, Tensor>> t;
  const lm::LmWeights& w = m.weights();
  t.push_back({"model.embed_tokens.weight", w.token_embd});
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const lm::LayerWeights& L = w.layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    t.push_back({p + "input_layernorm.weight", L.attn_norm});
    if (L.attn_norm_b.defined()) t.push_back({p + "input_layernorm.bias", L.attn_norm_b});
    const int64_t q = c.n_head * c.head_dim, kv = c.n_head_kv * c.head_dim;
    Tensor wq = L.wq.tensor(), wk = L.wk.tensor(), wv = L.wv.tensor(), bq = L.bq, bk = L.bk, bv = L.bv;
    if (L.wqkv.tensor().defined()) {
      const Tensor f = L.wqkv.tensor();
      wq = f.slice(0, 0, q), wk = f.slice(0, q, q + kv), wv = f.slice(0, q + kv, q + 2 * kv);
      bq = L.bqkv.slice(0, 0, q), bk = L.bqkv.slice(0, q, q + kv), bv = L.bqkv.slice(0, q + kv, q + 2 * kv);
    }
    if (llama) wq = unpermute(wq, c.n_head), wk = unpermute(wk, c.n_head_kv);
    t.push_back({p + "self_attn.q_proj.weight", wq});
    t.push_back({p + "self_attn.k_proj.weight", wk});
    t.push_back({p + "self_attn.v_proj.weight", wv});
    if (bq.defined()) {
      t.push_back({p + "self_attn.q_proj.bias", bq});
      t.push_back({p + "self_attn.k_proj.bias", bk});
      t.push_back({p + "self_attn.v_proj.bias", bv});
    }
    t.push_back({p + (phi ? "self_attn.dense.weight" : "self_attn.o_proj.weight"), L.wo.tensor()});
    if (L.bo.defined()) t.push_back({p + "self_attn.dense.bias", L.bo});
    if (phi) {
      t.push_back({p + "mlp.fc1.weight", L.w_up.tensor()});
      t.push_back({p + "mlp.fc1.bias", L.b_up});
      t.push_back({p + "mlp.fc2.weight", L.w_down.tensor()});
      t.push_back({p + "mlp.fc2.bias", L.b_down});
    } else {
      t.push_back({p + "post_attention_layernorm.weight", L.ffn_norm});
      if (L.ffn_norm_b.defined()) t.push_back({p + "post_attention_layernorm.bias", L.ffn_norm_b});
      t.push_back({p + "mlp.gate_proj.weight", L.w_gate.tensor()});
      t.push_back({p + "mlp.up_proj.weight", L.w_up.tensor()});
      t.push_back({p + "mlp.down_proj.weight", L.w_down.tensor()});
    }
  }
  t.push_back({phi ? "model.final_layernorm.weight" : "model.norm.weight", w.out_norm});
  if (w.out_norm_b.defined()) t.push_back({phi ? "model.final_layernorm.bias" : "model.norm.bias", w.out_norm_b});
  const bool tied = w.output.tensor().raw() == w.token_embd.raw();
  if (!tied) t.push_back({"lm_head.weight", w.output.tensor()});
  if (w.output_b.defined()) t.push_back({"lm_head.bias", w.output_b});
  io::write_safetensors_sharded(dir, t, 4 << 20);  // several shards for the bigger vocabularies
  const char* type = phi ? "phi" : c.arch == "stablelm" ? "stablelm" : c.arch.c_str();
  std::ofstream cfg(dir + "/config.json");
  cfg << "{\"model_type\": \"" << type << "\", \"hidden_size\": " << c.n_embd << ", \"intermediate_size\": " << c.n_ff
      << ", \"num_hidden_layers\": " << c.n_layer << ", \"num_attention_heads\": " << c.n_head
      << ", \"num_key_value_heads\": " << c.n_head_kv << ", \"vocab_size\": " << c.n_vocab
      << ", \"max_position_embeddings\": 256, \"rope_theta\": " << c.rope.theta
      << ", \"partial_rotary_factor\": " << double(c.rope.n_rot) / double(c.head_dim)
      << ", \"" << (c.norm == lm::NormKind::Rms ? "rms_norm_eps" : "layer_norm_eps") << "\": " << c.norm_eps
      << ", \"use_qkv_bias\": " << (w.layers[0].bq.defined() ? "true" : "false")
      << ", \"tie_word_embeddings\": " << (tied ? "true" : "false") << "}";
  return dir;
}

}  // namespace

TEST(LmHf, SameLogitsAsGguf) {
  for (const char* m : {"llama-f32", "qwen2-f32", "phi2-f32", "stablelm-f32"}) {
    SCOPED_TRACE(m);
    auto gguf = lm::load_gguf(io::GgufFile::open(kPeer + "tiny-" + std::string(m) + ".gguf"));
    const std::string dir = export_hf(m, *gguf);
    auto hf = lm::load_model(dir);
    // The GGUF model with exact numerics (no llama.cpp emulation), as the HF path computes.
    lm::LmConfig c = gguf->config();
    c.rope.angles = ops::RopeAngles::Exact;
    c.gelu_f16_table = false;
    c.prescale_q = false;
    c.f32_ggml_order = false;
    const lm::LanguageModel exact(c, gguf->weights());
    EXPECT_EQ(hf->config().rope.n_rot, c.rope.n_rot);
    const std::vector<int32_t> ids = test::read_array<int32_t>(kPeer + std::string(m) + ".tokens.i32");
    lm::KvCache ca(c, 64, DType::F32), cb(hf->config(), 64, DType::F32);
    const Tensor want = exact.forward_ids(ids, ca, true), got = hf->forward_ids(ids, cb, true);
    EXPECT_LE(test::rel_err(got, want), 1e-5);
    std::system(("rm -rf " + dir).c_str());
  }
}
