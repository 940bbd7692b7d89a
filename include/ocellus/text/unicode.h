#pragma once
// UTF-8 and the Unicode character classes the tokenizers' pre-tokenizer patterns use
// (\p{L}, \p{N}, \s as Unicode White_Space), answered by ICU so they follow the Unicode
// version of the Hugging Face tokenizers the reference ids came from.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ocellus::text {

// Length in bytes of the UTF-8 sequence starting with byte c (1 for a stray continuation byte
// or an invalid lead, so malformed input advances one byte at a time).
inline int utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xe0) == 0xc0) return 2;
  if ((c & 0xf0) == 0xe0) return 3;
  if ((c & 0xf8) == 0xf0) return 4;
  return 1;
}

// Decodes the code point at s[i]; sets len to the bytes used. Malformed or truncated sequences
// decode as U+FFFD, consuming one byte.
uint32_t utf8_decode(std::string_view s, size_t i, int* len);
void utf8_append(std::string& out, uint32_t cp);

// Streamed text made valid: takes from `pending` everything but an unfinished character at its
// end (a lead byte with the right continuation bytes so far, which may still complete) and
// returns it as valid UTF-8, each maximal ill-formed subsequence replaced by U+FFFD (Unicode's
// "substitution of maximal subparts", as browsers and Python decode). Overlong forms,
// surrogates and code points past U+10FFFF are ill-formed.
std::string utf8_take_valid(std::string& pending);

bool is_letter(uint32_t cp);      // \p{L}
bool is_number(uint32_t cp);      // \p{N}
bool is_whitespace(uint32_t cp);  // \s (White_Space)

// GPT-2's byte-level alphabet: each byte as a printable code point, and back.
const std::string& byte_to_unicode(uint8_t b);  // UTF-8 of the code point
int unicode_to_byte(uint32_t cp);               // -1 if not in the alphabet

}  // namespace ocellus::text
