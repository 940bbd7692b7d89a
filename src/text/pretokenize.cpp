#include "ocellus/text/pretokenize.h"

#include "ocellus/core/error.h"
#include "ocellus/text/unicode.h"

namespace ocellus::text {

PreTokenizer pretokenizer_from_name(const std::string& name) {
  if (name == "gpt-2" || name == "gpt2" || name == "phi-2" || name == "default" || name == "starcoder" ||
      name == "refact" || name == "olmo" || name == "jais")
    return PreTokenizer::Gpt2;
  if (name == "llama3" || name == "llama-v3" || name == "llama-bpe" || name == "dbrx" || name == "smaug-bpe")
    return PreTokenizer::Llama3;
  if (name == "qwen2" || name == "stablelm2") return PreTokenizer::Qwen2;
  fail("tokenizer: pre-tokenizer '", name, "' is not supported (known: gpt-2, phi-2, llama-bpe / llama3, qwen2, stablelm2)");
}

namespace {

struct Cps {
  std::vector<uint32_t> cp;
  std::vector<size_t> off;  // byte offset of each code point; off[n] = text size
  size_t n() const { return cp.size(); }
  // Classes of position i (out of range: none of them).
  bool L(size_t i) const { return i < n() && is_letter(cp[i]); }
  bool N(size_t i) const { return i < n() && is_number(cp[i]); }
  bool S(size_t i) const { return i < n() && is_whitespace(cp[i]); }
  bool crlf(size_t i) const { return i < n() && (cp[i] == '\r' || cp[i] == '\n'); }
  bool other(size_t i) const { return i < n() && !is_whitespace(cp[i]) && !is_letter(cp[i]) && !is_number(cp[i]); }
  uint32_t lower(size_t i) const { return i < n() && cp[i] < 0x80 ? (cp[i] | 0x20) : (i < n() ? cp[i] : 0); }
};

// 's 't 're 've 'm 'll 'd at i; returns the match length in code points (0: none).
size_t contraction(const Cps& c, size_t i, bool any_case) {
  if (i >= c.n() || c.cp[i] != '\'') return 0;
  auto at = [&](size_t k) -> uint32_t {
    if (i + k >= c.n()) return 0;
    return any_case ? c.lower(i + k) : c.cp[i + k];
  };
  const uint32_t a = at(1), b = at(2);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// \s+(?!\S) then \s+ at i (c.S(i) holds): the run, less its last character when a non-space
// follows and the run is longer than one.
size_t whitespace_run(const Cps& c, size_t i) {
  size_t j = i;
  while (c.S(j)) ++j;
  if (j < c.n() && j - i > 1) return j - 1 - i;
  return j - i;
}

size_t match_gpt2(const Cps& c, size_t i) {
  if (size_t m = contraction(c, i, false)) return m;
  const size_t s = c.cp[i] == ' ' ? 1 : 0;  // the optional leading space
  size_t j = i + s;
  if (c.L(j)) { while (c.L(j)) ++j; return j - i; }
  if (c.N(j)) { while (c.N(j)) ++j; return j - i; }
  if (c.other(j)) { while (c.other(j)) ++j; return j - i; }
  return whitespace_run(c, i);  // c.S(i) holds here (a lone ' ' before a space or the end)
}

size_t match_llama3(const Cps& c, size_t i, size_t max_digits) {
  if (size_t m = contraction(c, i, true)) return m;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (c.L(i) || (!c.crlf(i) && !c.N(i) && c.L(i + 1))) {
    size_t j = c.L(i) ? i : i + 1;
    while (c.L(j)) ++j;
    return j - i;
  }
  if (c.N(i)) {
    size_t j = i;
    while (c.N(j) && j - i < max_digits) ++j;
    return j - i;
  }
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  {
    const size_t s = c.cp[i] == ' ' ? 1 : 0;
    if (c.other(i + s)) {
      size_t j = i + s;
      while (c.other(j)) ++j;
      while (c.crlf(j)) ++j;
      return j - i;
    }
  }
  // \s*[\r\n]+ : up to just after the last CR/LF of the whitespace run.
  size_t j = i, last = 0;
  while (c.S(j)) {
    if (c.crlf(j)) last = j + 1;
    ++j;
  }
  if (last) return last - i;
  return whitespace_run(c, i);
}

}  // namespace

std::vector<std::string_view> pretokenize(PreTokenizer p, std::string_view text) {
  Cps c;
  c.cp.reserve(text.size());
  c.off.reserve(text.size() + 1);
  for (size_t i = 0; i < text.size();) {
    int len;
    c.off.push_back(i);
    c.cp.push_back(utf8_decode(text, i, &len));
    i += size_t(len);
  }
  c.off.push_back(text.size());
  std::vector<std::string_view> words;
  for (size_t i = 0; i < c.n();) {
    size_t m = p == PreTokenizer::Gpt2 ? match_gpt2(c, i) : match_llama3(c, i, p == PreTokenizer::Llama3 ? 3 : 1);
    if (m == 0) m = 1;  // cannot happen for these patterns; never loop forever
    words.push_back(text.substr(c.off[i], c.off[i + m] - c.off[i]));
    i += m;
  }
  return words;
}

}  // namespace ocellus::text
