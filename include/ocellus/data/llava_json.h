#pragma once
// Training data: LLaVA conversation JSON ([{"id", "image", "conversations": [{"from": "human" |
// "gpt" | "system", "value"}]}], "<image>" in the text; captions for pretraining use the same
// format with one human / gpt exchange) turned into token ids with the loss mask on assistant
// tokens and -1 runs where image rows go, truncated to a length after the image tokens are in.
#include <cstdint>
#include <string>
#include <vector>

#include "ocellus/text/chat.h"

namespace ocellus::data {

struct Record {
  std::string id;
  std::string image;                    // relative to the image folder; empty: text only
  std::vector<text::Message> messages;  // roles "system", "user", "assistant"
};

// What to do with a malformed record: stop with an error naming its index, or skip it (each
// skip is reported through `skipped` as "record N: why").
enum class OnBad { Fail, Skip };

std::vector<Record> parse_llava_json(const std::string& json_text, const std::string& name, OnBad on_bad,
                                     std::vector<std::string>* skipped = nullptr);
std::vector<Record> read_llava_json(const std::string& path, OnBad on_bad, std::vector<std::string>* skipped = nullptr);

// A record as a training sequence: ids (-1 rows for the image), mask (1 on assistant tokens),
// at most max_len tokens. Truncation never cuts an image: a sequence that would end inside its
// rows ends before them (and then holds no image). `has_image` says whether it kept it.
struct Encoded {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
  bool has_image = false;
  bool truncated = false;
};
Encoded encode_record(const Record& r, const text::Tokenizer& tok, text::ChatTemplate t, int64_t n_image_tokens,
                      int64_t max_len);

}  // namespace ocellus::data
