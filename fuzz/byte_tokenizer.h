#pragma once
// For the fuzz targets that tokenize what they parse: a byte-level tokenizer that can encode any
// text (the 256 byte symbols, no merges) with the chat templates' special tokens.
#include <cstdint>
#include <string>
#include <vector>

#include "ocellus/text/tokenizer.h"
#include "ocellus/text/unicode.h"

namespace ocellus::fuzz {

inline const text::Tokenizer& byte_tokenizer() {
  static const text::Tokenizer t = [] {
    std::vector<std::string> bytes;
    for (int b = 0; b < 256; ++b) bytes.push_back(text::byte_to_unicode(uint8_t(b)));
    return text::Tokenizer::byte_level_bpe(
        {"<|endoftext|>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"},
        bytes, {}, text::PreTokenizer::Gpt2, "<s>", "</s>");
  }();
  return t;
}

}  // namespace ocellus::fuzz
