#pragma once
// A trained model written where the inference path reads it: the base Hugging Face folder with
// the trained tensors in place, and for a VLM also the GGUF pair (text model + mmproj,
// llama.cpp's layout). Both load with `ocellus run`.
#include <map>
#include <string>

#include "ocellus/core/tensor.h"
#include "ocellus/model/vlm_train.h"
#include "ocellus/text/tokenizer.h"

namespace ocellus::model {

// The base folder's tensors with trained ones in place (keyed by their name in the base files),
// written to dir/model.safetensors beside copies of its config, tokenizer and preprocessor files.
void export_hf_folder(const std::string& base_dir, const std::map<std::string, Tensor>& trained, const std::string& dir);

// A trained VLM (LoRA adapters merged) as the base folder with its tensors in place (model_dir),
// and as gguf_model + gguf_mmproj; the base folder's chat template travels into the GGUF.
void export_trained_vlm(const TrainableVlm& vlm, const std::string& base_dir, const text::Tokenizer& tok, const std::string& model_dir,
                        const std::string& gguf_model, const std::string& gguf_mmproj);

}  // namespace ocellus::model
