#pragma once
// The next-token objective ("objective": "next_token", the default): the recipe's base LLaVA
// folder (or text model) trained with cross-entropy on the tokens of LLaVA JSON conversations
// that its "loss" names (the assistant's replies by default). Images come as tower features from
// the feature cache; which parts train is the recipe's ("trainable", "tower_from", "lora").
// Exports out/model (the base folder with the trained tensors, adapters merged) and
// out/gguf/{model,mmproj}.gguf.
#include <memory>

#include "ocellus/train/trainer.h"

namespace ocellus::train {

// The model loaded and its data read and checked (every error names the record; a record whose
// image is not cached is one). r must outlive it.
std::unique_ptr<Objective> next_token_objective(const Recipe& r);

}  // namespace ocellus::train
