#pragma once
// Learns a byte-level BPE vocabulary from text (the from-scratch models' tokenizers): words from
// the family's pre-tokenizer, the 256 byte characters as the alphabet, then the most frequent
// adjacent pair merged again and again (ties: the pair of smaller ids) until the vocabulary has
// the requested size or no pair occurs min_frequency times. Deterministic.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ocellus/text/tokenizer.h"

namespace ocellus::text {

struct BpeTrainOptions {
  int32_t vocab_size = 4096;              // specials + 256 bytes + merges
  PreTokenizer pre = PreTokenizer::Gpt2;
  std::vector<std::string> specials;      // ids 0.. in this order; never split, never learned from
  std::string bos, eos;                   // among the specials (may be empty)
  int64_t min_frequency = 2;
  // Called every few hundred merges and at the end: (merges done, merges wanted).
  std::function<void(int64_t, int64_t)> progress;
};

Tokenizer train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& opt);

}  // namespace ocellus::text
