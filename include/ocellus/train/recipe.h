#pragma once
// A training recipe: one stage (language-model pretraining, SigLIP tower pretraining, connector
// pretraining on captions or instruction fine-tuning) as a readable JSON file. Which objective,
// which data, which parameters train with which learning rates, where the run goes.
#include <cstdint>
#include <string>
#include <vector>

#include "ocellus/core/dtype.h"
#include "ocellus/data/llava_json.h"

namespace ocellus::train {

struct RecipeGroup {
  std::string prefix;  // parameters whose names start with it
  double lr = 0, weight_decay = 0;
};

// The text tower and heads of SigLIP pretraining ("objective": "siglip").
struct SiglipOptions {
  int64_t text_embd = 128, text_ff = 512, text_layers = 2, text_heads = 2;
  int64_t embed_dim = 128;     // the shared space both towers are projected into
  int64_t max_text_len = 64;   // caption tokens kept
};

struct Recipe {
  std::string path;                 // the recipe file (relative paths are relative to its folder)
  // "next_token", "siglip" (contrastive pretraining of the tower), "vae" (an image autoencoder
  // from scratch), "classifier" (an image classifier from scratch) or "fusion" (LlamaFusion's
  // image side on a text model).
  std::string objective = "next_token";
  SiglipOptions siglip;
  std::string model_config;         // "model": the new model's config.json (vae, classifier, fusion), as JSON text
  std::string vae;                  // fusion: the VAE folder whose latents it diffuses
  std::string init;                 // fusion: a model folder whose trained weights start the run (a further stage)
  double image_loss_weight = 5;     // fusion: λ, the noise MSE's weight against the text's cross-entropy
  double cfg_dropout = 0.1;         // fusion: the fraction of generation samples whose caption is dropped
  double understanding = 0.5;       // fusion: the fraction of samples that read the image (the rest draw it)
  double kl_weight = 1e-4;          // vae: the KL term's weight against the reconstruction MSE
  DType export_dtype = DType::F32;  // vae, classifier, fusion: the exported model's matrices and kernels (f32, f16, bf16)
  std::string labels;               // classifier: the labels (IDX) of the images in 'data' (IDX)
  std::string base;                 // Hugging Face LLaVA folder: initial weights, config, tokenizer (fusion: a GGUF text model)
  std::string data, images;         // LLaVA JSON and its image folder
  std::string cache;                // feature cache of the (frozen) tower over the images (text-only data: none)
  std::string chat_template;        // by name; empty: from the base folder
  bool ignore_images = false;       // train on the records' text alone (language-model pretraining)
  int64_t min_turns = 1;            // records with fewer assistant replies are left out
  bool loss_on_all = false;         // "loss": "all": every token predicted, not only the assistant's
  bool loss_not_assistant = false;  // "loss": "not_assistant": every token but the assistant's
  data::OnBad on_bad = data::OnBad::Fail;
  std::vector<std::string> trainable{""};  // name prefixes that train (default: all but the tower)
  std::vector<RecipeGroup> groups;  // per-prefix learning rate / weight decay (first match)
  int64_t tower_from = -1;          // >= 0: the tower's blocks from this one up train (the cache
                                    // then holds the hidden states below them: cache --hidden-after)
  int64_t lora_rank = 0;            // > 0: LoRA adapters on the text model (its weights frozen)
  double lora_alpha = 16;
  std::vector<std::string> lora_targets{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  double lr = 1e-3, weight_decay = 0.0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, clip = 1.0;
  int64_t warmup = 0;
  double min_lr_ratio = 0.0;
  int64_t steps = 100, batch = 4, max_len = 512;
  int64_t micro_batch_tokens = 4096;  // tokens per stacked pass; a batch beyond it accumulates gradients
  uint64_t seed = 1;
  std::string out;                  // output folder: checkpoints/, metrics.jsonl, loss.png, model/
  int64_t checkpoint_every = 0;     // steps between checkpoints (0: only the last)
  int64_t keep = 2;                 // checkpoints kept

  // Whether a parameter of this name trains: one of the 'trainable' prefixes starts it.
  bool trains(const std::string& param) const {
    for (const std::string& p : trainable)
      if (param.starts_with(p)) return true;
    return false;
  }
};

// Reads and validates a recipe; unknown keys and bad values are errors naming them.
Recipe read_recipe(const std::string& path);
Recipe parse_recipe(const std::string& json_text, const std::string& path);

}  // namespace ocellus::train
