#pragma once
// A VLM as training sees it: every parameter an f32 autograd leaf under its Hugging Face LLaVA
// checkpoint name, run by the same block definitions as inference (lm/decoder_block.h,
// vision/encoder_block.h, connect/) in the training context (nn::Train): no KV cache, the whole
// sequence at once, several sequences stacked. Every text family and every connector trains;
// image features come from a frozen tower (or the embedding cache) as inputs, or the hidden
// state below the tower's upper blocks when those train. Its logits equal the inference model's
// on the same weights (tested), so a trained checkpoint runs through the inference path unchanged.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ocellus/autograd/autograd.h"
#include "ocellus/connect/connector.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/lm/lm.h"
#include "ocellus/nn/forward.h"
#include "ocellus/vision/vit.h"

namespace ocellus::model {

struct TrainVlmConfig {
  io::HfTextConfig text;           // the language model (its family decides the block)
  std::string connector = "mlp2x_gelu";  // any connect:: type
  ops::Activation connector_act = ops::Activation::GeluErf;
  // Spatial merge before the connector (connect::ConnectorConfig::merge): the connector reads
  // features of width merge² · vit.n_embd, merge² times fewer per image.
  int64_t merge = 1;
  vision::VitConfig vit;           // the tower (its upper blocks train when tower_from >= 0)
  // -1: the tower is frozen and the inputs are its features. k >= 0: blocks k.. of the tower
  // (up to its feature layer) are parameters too, and the inputs are the hidden states after
  // block k (TinyLLaVA's "share" recipe trains the tower's upper part this way).
  int64_t tower_from = -1;
  connect::ConnectorConfig connector_config(int64_t n_embd) const;
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
  // multi_modal_projector.*), converted to f32.
  TrainableVlm(TrainVlmConfig c, const io::TensorSource& s);
  const TrainVlmConfig& config() const { return c_; }
  const lm::LmConfig& lm_config() const { return lm_c_; }
  // Rows an image becomes in the sequence (the connector's tokens for the tower's features).
  int64_t n_image_tokens() const { return conn_->n_tokens(c_.vit.n_features()); }

  // Every parameter, in a fixed order (the text model, the tower's upper blocks, the connector).
  const std::vector<ag::Var>& params() const { return params_; }
  ag::Var param(const std::string& name) const { return ag::find_param(params_, name, "train"); }
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

  // Every parameter under its checkpoint name (adapters separate: for checkpoints).
  std::vector<std::pair<std::string, Tensor>> tensors() const { return ag::named_values(params_); }
  // The model to export: adapters merged into their weights (W + alpha / rank · B A).
  std::vector<std::pair<std::string, Tensor>> merged_tensors() const;
  // The name a parameter has in the checkpoint it was loaded from (whatever its layout).
  const std::string& file_name(const std::string& param) const;

 private:
  nn::Train context() const;
  ag::Var input_rows(const TrainSample& s) const;  // [n, d]
  ag::Var hidden_batch(const std::vector<TrainSample>& batch) const;  // the last block's rows [Σ n, d]
  ag::Var image_rows(const Tensor& f) const;  // features (or hidden state) -> [n_img_tok, d]

  TrainVlmConfig c_;
  lm::LmConfig lm_c_;
  std::vector<ag::Var> params_;
  std::map<std::string, std::string> file_names_;  // parameter -> its name in the loaded checkpoint
  lm::DecoderWeights<nn::Train> lm_;
  vision::Vit<nn::Train> tower_;  // the upper blocks and the post-LayerNorm (tower_from >= 0)
  std::unique_ptr<connect::ConnectorOf<nn::Train>> conn_;
  std::vector<nn::Train::Adapter> lora_;
};

}  // namespace ocellus::model
