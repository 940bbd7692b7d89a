#pragma once
// Tokenizers: SentencePiece-style (Llama 2 / TinyLlama: scores, "▁" for spaces, byte fallback)
// and byte-level BPE (GPT-2, Llama 3, Qwen2, Phi-2, StableLM-2: ranked merges after the family's
// pre-tokenizer), loaded from GGUF metadata (tokenizer.ggml.*). Special tokens (control and
// user-defined) in the text are single tokens when parse_special is set, plain text otherwise.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ocellus/text/pretokenize.h"

namespace ocellus::io {
class GgufFile;
class GgufWriter;
}

namespace ocellus::text {

// GGUF's token types.
enum class TokenType : int32_t { Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

class Tokenizer {
 public:
  enum class Kind { Spm, Bpe };

  static Tokenizer from_gguf(const io::GgufFile& f);
  // Hugging Face tokenizer.json (byte-level BPE), with tokenizer_config.json beside it when
  // present (add_bos_token / add_eos_token, bos / eos tokens).
  static Tokenizer from_hf_json(const std::string& path);
  // The same from the files' text (config_text null: no tokenizer_config.json); the paths only
  // label errors.
  static Tokenizer from_hf_json_text(const std::string& json_text, const std::string& path, const std::string* config_text,
                                     const std::string& cfg_path);
  // A model GGUF, a vocabulary-only GGUF, a tokenizer.json, or a folder holding tokenizer.json.
  static Tokenizer from_file(const std::string& path);
  // A byte-level BPE tokenizer from its parts: `specials` first (ids 0..), then `tokens`;
  // merges in rank order as (left, right) strings; the ends of sequences marked by bos / eos
  // (token strings, may be empty).
  static Tokenizer byte_level_bpe(const std::vector<std::string>& specials, const std::vector<std::string>& tokens,
                                  const std::vector<std::pair<std::string, std::string>>& merges, PreTokenizer pre,
                                  const std::string& bos, const std::string& eos);
  // Writes tokenizer.json (byte-level BPE only) that this code and Hugging Face tokenizers load.
  void save_hf_json(const std::string& path) const;
  // Writes the vocabulary as GGUF tokenizer.ggml.* keys (llama.cpp's), which from_gguf reads back.
  void save_gguf(io::GgufWriter& w) const;

  Kind kind() const { return kind_; }
  const char* kind_name() const { return kind_ == Kind::Spm ? "SentencePiece" : "byte-level BPE"; }
  PreTokenizer pre() const { return pre_; }
  int32_t n_vocab() const { return int32_t(tokens_.size()); }
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  bool add_bos() const { return add_bos_; }
  const std::string& token(int32_t id) const;  // the vocabulary entry as stored
  TokenType type(int32_t id) const { return types_[size_t(id)]; }
  bool is_special(int32_t id) const;           // control or user-defined
  int32_t find(std::string_view token) const;  // -1 if absent

  // Token ids of `text`. add_special: BOS / EOS as the vocabulary says (add_bos / add_eos).
  // at_start: the text begins a sequence or follows a special token, where SentencePiece puts
  // its space prefix; false for a piece that continues text (chat templates encode piecewise).
  std::vector<int32_t> encode(std::string_view text, bool add_special = true, bool parse_special = false,
                              bool at_start = true) const;

  // The bytes a token stands for ("▁" -> space, <0x0A> -> "\n", GPT-2 byte characters -> bytes);
  // special tokens give their text unless skip_special.
  std::string piece(int32_t id, bool skip_special = false) const;
  // Text of a sequence; for SentencePiece the space the encoder prefixed is removed.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const;

  // Decodes tokens as they arrive and returns only whole UTF-8 characters: a character split
  // across tokens is held back until its last byte arrives.
  class Stream {
   public:
    explicit Stream(const Tokenizer& t, bool skip_special = true) : t_(t), skip_(skip_special) {}
    std::string push(int32_t id);
    std::string flush();  // whatever is left (an incomplete character as U+FFFD)

   private:
    const Tokenizer& t_;
    bool skip_;
    std::string pending_;
  };

 private:
  void build_indexes();
  void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
  void spm_merge(std::string_view s, std::vector<int32_t>& out) const;
  void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;
  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;

  Kind kind_ = Kind::Spm;
  PreTokenizer pre_ = PreTokenizer::Gpt2;
  std::vector<std::string> tokens_;
  std::vector<float> scores_;
  std::vector<TokenType> types_;
  struct Hash {  // lookups by string_view without building a string
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> index_;
  // BPE: (left id, right id) -> (rank, merged id).
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  std::vector<std::pair<int32_t, int32_t>> merge_list_;  // (left, right) in rank order
  void add_merges(const std::vector<std::pair<std::string, std::string>>& merges);
  std::array<int32_t, 256> byte_ids_{};  // SPM <0xXX> tokens; BPE single-byte characters
  std::vector<int32_t> specials_;        // longest first, for parsing
  int32_t bos_ = -1, eos_ = -1, unk_ = -1;
  bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = true, ignore_merges_ = false;
  bool spm_chunks_ = false;  // SentencePiece text may be merged chunk by chunk (see encode_spm)
};

}  // namespace ocellus::text
