// Phi-2: LayerNorm with bias, q/k/v with biases (fused in GGUF), partial rotary (rotate-half),
// attention and MLP in parallel on the same normed input, GELU (tanh form) MLP with biases,
// output bias. GGUF files run as llama.cpp's phi2 graph computes (f16 GELU table, Q scaled
// before the attention product).
#include "family_common.h"

namespace ocellus::lm {

namespace {
detail::Names hf_phi2_names() {
  detail::Names n = detail::hf_llama_names();
  n.out_norm = "model.final_layernorm.weight", n.out_norm_b = "model.final_layernorm.bias";
  n.o = "model.layers.%d.self_attn.dense.weight", n.o_b = "model.layers.%d.self_attn.dense.bias";
  n.up = "model.layers.%d.mlp.fc1.weight", n.up_b = "model.layers.%d.mlp.fc1.bias";
  n.down = "model.layers.%d.mlp.fc2.weight", n.down_b = "model.layers.%d.mlp.fc2.bias";
  return n;
}
}  // namespace

const Family& phi2_family() {
  static const Family f = [] {
    Family f;
    f.gguf_arch = "phi2", f.hf_model_types = {"phi"};
    f.norm = NormKind::Layer, f.act = ops::Activation::GeluTanh;  // gelu_new
    f.parallel_block = true;
    f.layout.norm_bias = true, f.layout.gated = false, f.layout.separate_ffn_norm = false;
    f.dense_biases = true;
    f.gguf_fused_qkv = true, f.gguf_gelu_f16_table = true, f.gguf_prescale_q = true;
    f.hf_names = hf_phi2_names, f.synth_vocab_pre = "gpt-2";
    f.chat_template = "phi2";
    return f;
  }();
  return f;
}

}  // namespace ocellus::lm
