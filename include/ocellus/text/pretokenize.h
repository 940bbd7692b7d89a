#pragma once
// Pre-tokenizers of the byte-level BPE families: the text is cut into words by each family's
// regular expression before BPE runs inside each word. The patterns are matched by hand-written
// scanners (same alternatives, same order, same backtracking) instead of a regex engine:
//   gpt2   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   llama3 (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   qwen2  as llama3 with \p{N} one digit at a time (also StableLM-2)
#include <string>
#include <string_view>
#include <vector>

namespace ocellus::text {

enum class PreTokenizer { Gpt2, Llama3, Qwen2 };

// By tokenizer.ggml.pre / Hugging Face name ("gpt-2", "llama-bpe", "qwen2", ...); throws for
// one it does not know, listing the known names.
PreTokenizer pretokenizer_from_name(const std::string& name);

// The words of `text`, as views into it, in order; together they cover the text exactly.
std::vector<std::string_view> pretokenize(PreTokenizer p, std::string_view text);

}  // namespace ocellus::text
