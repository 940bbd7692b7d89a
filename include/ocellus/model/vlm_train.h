#pragma once
// A VLM as training sees it: every parameter an f32 autograd leaf under its Hugging Face LLaVA
// checkpoint name, the forward written with ag:: ops (no KV cache: the whole sequence at once,
// causal), image features from a frozen tower (or the embedding cache) as inputs. Text model:
// the llama and qwen2 families (RMSNorm, SwiGLU, rotate-half rope, GQA, optional q/k/v
// biases); connector: mlp2x_gelu or linear. Its logits equal the inference model's on the same
// weights (tested), so a trained checkpoint runs through the inference path unchanged.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ocellus/autograd/autograd.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/lm/lm.h"
#include "ocellus/vision/vit.h"

namespace ocellus::model {

// A pre-LayerNorm transformer encoder block as ViT / SigLIP towers (and SigLIP's text tower)
// have it: h + attn(ln1 h), then h + fc2(act(fc1(ln2 h))), bidirectional attention within each
// segment [starts[i], starts[i+1]) of the stacked rows.
struct EncoderBlock {
  ag::Var ln1_w, ln1_b, ln2_w, ln2_b, q, q_b, k, k_b, v, v_b, o, o_b, fc1, fc1_b, fc2, fc2_b;
};
// Block i of a tower under the names n (vision::hf_vit_names / gguf_vit_names), each parameter
// made by make(name, shape, required): biases are not required.
EncoderBlock tower_block(const vision::VitNames& n, int64_t i, int64_t d, int64_t ff,
                         const std::function<ag::Var(const std::string&, const Shape&, bool)>& make);
ag::Var encoder_block(const EncoderBlock& b, const ag::Var& h, int64_t n_head, ops::Activation act, float eps,
                      const std::vector<int64_t>& starts);

struct TrainVlmConfig {
  lm::LmConfig lm;                 // arch, sizes, rope (rotate-half, exact), norm_eps
  std::string connector = "mlp2x_gelu";  // or "linear", "attn_blocks" (Llama 3-V: self-attention blocks, then a projection)
  ops::Activation connector_act = ops::Activation::GeluErf;
  int64_t d_vision = 0;            // the tower's feature width
  // Spatial merge before the connector (connect::ConnectorConfig::merge): the connector reads
  // features of width merge² · d_vision, merge² times fewer per image.
  int64_t merge = 1;
  int64_t d_connector_in() const { return d_vision * merge * merge; }
  int64_t n_image_tokens() const { return vit.n_features() / (merge * merge); }
  bool qkv_bias = false;
  bool tied = false;               // output shares the token embedding
  vision::VitConfig vit;           // the tower (its upper blocks train when tower_from >= 0)
  // -1: the tower is frozen and the inputs are its features. k >= 0: blocks k.. of the tower
  // (up to its feature layer) are parameters too, and the inputs are the hidden states after
  // block k (TinyLLaVA's "share" recipe trains the tower's upper part this way).
  int64_t tower_from = -1;
};
// From a LLaVA-style config.json (text_config, vision_config, projector).
TrainVlmConfig train_config_from_hf(const io::HfConfig& c);

// One training sequence: token ids with -1 where image rows go (as model::Spliced), the loss
// mask (1 on tokens that are predicted: the assistant's), and one feature block per image.
struct TrainSample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
  std::vector<Tensor> features;    // each [n_features, d_vision] f32 (with tower_from >= 0: the
                                   // hidden state [n_positions, d_vision]), in order of the -1 runs
};

class TrainableVlm {
 public:
  // Weights under HF LLaVA names (language model plain or with the llava prefixes; projector
  // multi_modal_projector.linear_{1,2}), converted to f32.
  TrainableVlm(TrainVlmConfig c, const io::TensorSource& s);
  const TrainVlmConfig& config() const { return c_; }

  // Every parameter, in a fixed order (token embedding, layers, norm, output, connector).
  const std::vector<ag::Var>& params() const { return params_; }
  ag::Var param(const std::string& name) const;  // throws naming the missing one
  // Freezes (or unfreezes) the parameters whose names start with prefix; returns how many.
  int set_trainable(const std::string& prefix, bool trainable);

  // Logits [n, n_vocab] of the sequence (image rows spliced at the -1 runs).
  ag::Var forward(const TrainSample& s) const { return forward_batch({s}); }
  // Several sequences at once: their rows stacked (every matrix product runs over all of them,
  // attention within each sequence). Logits [Σ n, n_vocab].
  ag::Var forward_batch(const std::vector<TrainSample>& batch) const;
  // Mean cross-entropy of next-token prediction on the masked tokens; scalar [1]. For a batch:
  // the mean over all its counted tokens. The output layer runs only on the rows that predict a
  // counted token (the others carry no loss), so a step costs less than forward_batch's logits.
  ag::Var loss(const TrainSample& s) const { return loss_batch({s}); }
  ag::Var loss_batch(const std::vector<TrainSample>& batch) const;
  // Tokens a sequence contributes to the loss.
  static int64_t counted_tokens(const TrainSample& s);

  // LoRA: low-rank adapters beside the text model's linear layers whose names end in one of
  // `targets` ("q_proj", ..., "down_proj"): y = x Wᵀ + (alpha / rank) (x Aᵀ) Bᵀ with A [rank, k]
  // uniform in ±1/sqrt(k) (PEFT's init) and B [m, rank] zero, named "<weight>.lora_A" /
  // "<weight>.lora_B". The adapters train; the text model's own weights are frozen.
  void enable_lora(int64_t rank, float alpha, const std::vector<std::string>& targets, uint64_t seed);
  bool has_lora() const { return !lora_.empty(); }
  bool has_adapter(const ag::Var& w) const;  // a LoRA adapter sits beside weight w

  // Every parameter under its checkpoint name (adapters separate: for checkpoints).
  std::vector<std::pair<std::string, Tensor>> tensors() const;
  // The model to export: adapters merged into their weights (W + alpha / rank · B A).
  std::vector<std::pair<std::string, Tensor>> merged_tensors() const;
  // The name a parameter has in the checkpoint it was loaded from (whatever its layout).
  const std::string& file_name(const std::string& param) const;

 private:
  struct Layer {
    ag::Var attn_norm, ffn_norm, wq, wk, wv, wo, bq, bk, bv, gate, up, down;
  };
  ag::Var input_rows(const TrainSample& s) const;  // [n, d]
  ag::Var hidden_batch(const std::vector<TrainSample>& batch) const;  // the final norm's rows [Σ n, d]
  ag::Var linear(const ag::Var& x, const ag::Var& w, const ag::Var& b) const;  // with its adapter, if any
  ag::Var image_rows(const Tensor& f) const;  // features (or hidden state) -> [n_img_tok, d]
  std::vector<EncoderBlock> tower_;
  std::vector<EncoderBlock> conn_blocks_;  // attn_blocks connector
  ag::Var post_ln_w_, post_ln_b_;
  struct Lora {
    ag::Var a, b;
    float scale = 1;
  };
  std::vector<std::pair<const ag::Node*, Lora>> lora_;
  ag::Var add_param(const io::TensorSource& s, const std::string& name, const Shape& shape, bool required = true);

  TrainVlmConfig c_;
  std::vector<ag::Var> params_;
  std::map<std::string, std::string> file_names_;  // parameter -> its name in the loaded checkpoint
  ag::Var tok_embd_, out_norm_, output_, proj1_w_, proj1_b_, proj2_w_, proj2_b_;
  std::vector<Layer> layers_;
};

}  // namespace ocellus::model
