// Llama 2 / 3, TinyLlama: RMSNorm, SwiGLU, grouped-query attention (the descriptor's defaults).
// llama.cpp's converter permutes the Q and K rows so rotary pairs are adjacent: GGUF llama files
// use the adjacent-pair rope layout; Hugging Face checkpoints keep rotate-half order.
#include "family_common.h"

namespace ocellus::lm {

namespace detail {
Names hf_llama_names() {
  Names n;
  n.tok_embd = "model.embed_tokens.weight", n.out_norm = "model.norm.weight", n.out_norm_b = "model.norm.bias";
  n.output = "lm_head.weight", n.output_b = "lm_head.bias";
  n.attn_norm = "model.layers.%d.input_layernorm.weight", n.attn_norm_b = "model.layers.%d.input_layernorm.bias";
  n.q = "model.layers.%d.self_attn.q_proj.weight", n.q_b = "model.layers.%d.self_attn.q_proj.bias";
  n.k = "model.layers.%d.self_attn.k_proj.weight", n.k_b = "model.layers.%d.self_attn.k_proj.bias";
  n.v = "model.layers.%d.self_attn.v_proj.weight", n.v_b = "model.layers.%d.self_attn.v_proj.bias";
  n.o = "model.layers.%d.self_attn.o_proj.weight", n.o_b = "model.layers.%d.self_attn.o_proj.bias";
  n.ffn_norm = "model.layers.%d.post_attention_layernorm.weight";
  n.ffn_norm_b = "model.layers.%d.post_attention_layernorm.bias";
  n.gate = "model.layers.%d.mlp.gate_proj.weight", n.up = "model.layers.%d.mlp.up_proj.weight";
  n.down = "model.layers.%d.mlp.down_proj.weight";
  return n;
}
}  // namespace detail

const Family& llama_family() {
  static const Family f = [] {
    Family f;  // the defaults are llama's block
    f.gguf_arch = "llama", f.hf_model_types = {"llama", "llava", "llava_llama", "tinyllava"};  // + LLaVA's flat configs
    f.gguf_rope = ops::RopeMode::Adjacent;
    f.hf_names = detail::hf_llama_names;
    f.chat_template = "vicuna", f.chat_template_with_eot_id = "llama3";  // Vicuna: LLaVA-1.5's
    return f;
  }();
  return f;
}

}  // namespace ocellus::lm
