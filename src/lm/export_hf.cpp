// A text model as a Hugging Face folder: its tensors under the family's HF names (the same Names
// tables the loaders read), llama.cpp's adjacent-pair Q/K rows put back in rotate-half order,
// fused q/k/v split; and the config.json that reads back as the same model.
#include <cstring>

#include <nlohmann/json.hpp>

#include "family_common.h"
#include "ocellus/core/error.h"
#include "ocellus/io/file.h"

namespace ocellus::lm {

namespace {

// The family's Hugging Face model_type and names.
struct HfFamily {
  const char* arch;
  const char* model_type;
  detail::Names (*names)();
};
const HfFamily kHfFamilies[] = {{"llama", "llama", detail::hf_llama_names},
                                {"qwen2", "qwen2", detail::hf_llama_names},
                                {"phi2", "phi", detail::hf_phi2_names},
                                {"stablelm", "stablelm", detail::hf_llama_names}};

const HfFamily& family(const std::string& arch) {
  for (const HfFamily& f : kHfFamilies)
    if (arch == f.arch) return f;
  fail("lm: no Hugging Face layout for architecture '", arch, "'");
}

// Adjacent-pair rows of each head (llama.cpp's converter) back to rotate-half order (HF).
Tensor rotate_half_rows(const Tensor& w, int64_t n_head) {
  const DType dt = w.dtype();
  const Tensor src = w.to(DType::F32).contiguous();
  Tensor out = Tensor::empty(w.shape());
  const int64_t rows = w.dim(0), cols = w.dim(1), hd = rows / n_head;
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < hd / 2; ++i)
      for (int64_t s = 0; s < 2; ++s)
        std::memcpy(out.data<float>() + (h * hd + s * hd / 2 + i) * cols, src.data<float>() + (h * hd + 2 * i + s) * cols,
                    size_t(cols) * sizeof(float));
  return dt == DType::F16 || dt == DType::BF16 ? out.to(dt) : out;
}

// Safetensors holds f32 / f16 / bf16: block-quantized weights are written dequantized.
Tensor storable(const Tensor& t) {
  return t.dtype() == DType::F32 || t.dtype() == DType::F16 || t.dtype() == DType::BF16 ? t : t.to(DType::F32);
}

}  // namespace

std::vector<std::pair<std::string, Tensor>> hf_tensors(const LanguageModel& m) {
  const LmConfig& c = m.config();
  const LmWeights& w = m.weights();
  const detail::Names n = family(c.arch).names();
  const bool adjacent = c.rope.mode == ops::RopeMode::Adjacent;
  OCELLUS_CHECK(!adjacent || c.rope.n_rot == c.head_dim, "lm: partial rotary in adjacent-pair order has no Hugging Face layout");
  std::vector<std::pair<std::string, Tensor>> out;
  auto add = [&](const std::string& pattern, int i, const Tensor& t) {
    if (!t.defined()) return;
    OCELLUS_CHECK(!pattern.empty(), "lm: ", c.arch, " has a tensor its Hugging Face layout cannot name");
    out.push_back({i < 0 ? pattern : io::gguf::name(pattern.c_str(), i), storable(t)});
  };
  add(n.tok_embd, -1, w.token_embd);
  const int64_t q = c.n_head * c.head_dim, kv = c.n_head_kv * c.head_dim;
  for (int i = 0; i < int(w.layers.size()); ++i) {
    const LayerWeights& L = w.layers[size_t(i)];
    add(n.attn_norm, i, L.attn_norm), add(n.attn_norm_b, i, L.attn_norm_b);
    Tensor wq = L.wq.tensor(), wk = L.wk.tensor(), wv = L.wv.tensor(), bq = L.bq, bk = L.bk, bv = L.bv;
    if (L.wqkv.tensor().defined()) {
      const Tensor f = L.wqkv.tensor();
      wq = f.slice(0, 0, q), wk = f.slice(0, q, q + kv), wv = f.slice(0, q + kv, q + 2 * kv);
      if (L.bqkv.defined()) bq = L.bqkv.slice(0, 0, q), bk = L.bqkv.slice(0, q, q + kv), bv = L.bqkv.slice(0, q + kv, q + 2 * kv);
    }
    if (adjacent) {
      wq = rotate_half_rows(wq, c.n_head), wk = rotate_half_rows(wk, c.n_head_kv);
      if (bq.defined()) bq = rotate_half_rows(bq.reshape({q, 1}), c.n_head).reshape({q});
      if (bk.defined()) bk = rotate_half_rows(bk.reshape({kv, 1}), c.n_head_kv).reshape({kv});
    }
    add(n.q, i, wq.contiguous()), add(n.q_b, i, bq), add(n.k, i, wk.contiguous()), add(n.k_b, i, bk);
    add(n.v, i, wv.contiguous()), add(n.v_b, i, bv), add(n.o, i, L.wo.tensor()), add(n.o_b, i, L.bo);
    add(n.ffn_norm, i, L.ffn_norm), add(n.ffn_norm_b, i, L.ffn_norm_b);
    add(n.gate, i, L.w_gate.tensor()), add(n.up, i, L.w_up.tensor()), add(n.up_b, i, L.b_up);
    add(n.down, i, L.w_down.tensor()), add(n.down_b, i, L.b_down);
  }
  add(n.out_norm, -1, w.out_norm), add(n.out_norm_b, -1, w.out_norm_b);
  if (w.output.tensor().raw() != w.token_embd.raw()) add(n.output, -1, w.output.tensor());
  add(n.output_b, -1, w.output_b);
  return out;
}

std::string hf_config_json(const LanguageModel& m) {
  const LmConfig& c = m.config();
  const LmWeights& w = m.weights();
  nlohmann::json j;
  j["model_type"] = family(c.arch).model_type;
  j["hidden_size"] = c.n_embd, j["intermediate_size"] = c.n_ff, j["num_hidden_layers"] = c.n_layer;
  j["num_attention_heads"] = c.n_head, j["num_key_value_heads"] = c.n_head_kv, j["vocab_size"] = c.n_vocab;
  j["max_position_embeddings"] = c.n_ctx, j["rope_theta"] = c.rope.theta;
  j["partial_rotary_factor"] = double(c.rope.n_rot) / double(c.head_dim);
  j[c.norm == NormKind::Rms ? "rms_norm_eps" : "layer_norm_eps"] = c.norm_eps;
  const bool qkv_bias = !w.layers.empty() && (w.layers[0].bq.defined() || w.layers[0].bqkv.defined());
  j["use_qkv_bias"] = qkv_bias;
  j["tie_word_embeddings"] = w.output.tensor().raw() == w.token_embd.raw();
  j["hidden_act"] = c.act == ops::Activation::Silu ? "silu" : c.act == ops::Activation::GeluTanh ? "gelu_new" : "gelu";
  j["torch_dtype"] = "float32";
  return j.dump(2);
}

}  // namespace ocellus::lm
