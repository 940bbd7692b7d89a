#include "ocellus/text/bpe_train.h"

#include <algorithm>
#include <unordered_map>

#include "ocellus/core/error.h"
#include "ocellus/text/pretokenize.h"
#include "ocellus/text/unicode.h"

namespace ocellus::text {

namespace {

uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

struct Word {
  std::vector<int32_t> s;  // symbol ids (0..255 bytes, then merges)
  int64_t count;
};

struct Candidate {
  int64_t count;
  uint64_t pair;
  // Max-heap: higher count first, then the smaller pair.
  bool operator<(const Candidate& o) const { return count != o.count ? count < o.count : pair > o.pair; }
};

}  // namespace

Tokenizer train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& opt) {
  const int64_t n_special = int64_t(opt.specials.size());
  OCELLUS_CHECK(opt.vocab_size >= n_special + 256, "bpe: a vocabulary of ", opt.vocab_size, " cannot hold ",
                n_special, " special tokens and the 256 bytes");
  for (const std::string& s : {opt.bos, opt.eos})
    OCELLUS_CHECK(s.empty() || std::find(opt.specials.begin(), opt.specials.end(), s) != opt.specials.end(),
                  "bpe: '", s, "' is used as bos/eos but is not among the special tokens");

  // Word frequencies; special tokens cut the text and are not learned from.
  std::unordered_map<std::string, int64_t> freq;
  for (const std::string& t : texts) {
    size_t pos = 0;
    while (pos < t.size()) {
      size_t next = t.size(), len = 0;
      for (const std::string& sp : opt.specials) {
        const size_t at = sp.empty() ? std::string::npos : t.find(sp, pos);
        if (at < next || (at == next && sp.size() > len)) next = at, len = sp.size();
      }
      for (std::string_view w : pretokenize(opt.pre, std::string_view(t).substr(pos, next - pos))) ++freq[std::string(w)];
      pos = next == t.size() ? next : next + len;
    }
  }
  // Sorted so the result does not depend on hash order.
  std::vector<std::pair<std::string, int64_t>> sorted(freq.begin(), freq.end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<Word> words;
  words.reserve(sorted.size());
  for (const auto& [w, c] : sorted) {
    Word x{{}, c};
    for (char ch : w) x.s.push_back(int32_t(static_cast<uint8_t>(ch)));
    words.push_back(std::move(x));
  }

  std::vector<std::string> sym;  // symbol strings (byte-level characters)
  for (int b = 0; b < 256; ++b) sym.push_back(byte_to_unicode(uint8_t(b)));
  std::unordered_map<uint64_t, int64_t> counts;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;  // pair -> words holding it (may be stale)
  for (size_t wi = 0; wi < words.size(); ++wi)
    for (size_t i = 0; i + 1 < words[wi].s.size(); ++i) {
      const uint64_t k = key(words[wi].s[i], words[wi].s[i + 1]);
      counts[k] += words[wi].count;
      auto& v = where[k];
      if (v.empty() || v.back() != int32_t(wi)) v.push_back(int32_t(wi));
    }
  std::vector<Candidate> heap;
  for (const auto& [k, c] : counts) heap.push_back({c, k});
  std::make_heap(heap.begin(), heap.end());

  const int64_t wanted = opt.vocab_size - n_special - 256;
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<int32_t> seen(words.size(), -1);
  while (int64_t(merges.size()) < wanted && !heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate top = heap.back();
    heap.pop_back();
    auto cit = counts.find(top.pair);
    if (cit == counts.end() || cit->second != top.count) continue;  // stale entry
    if (top.count < opt.min_frequency) break;
    const int32_t a = int32_t(top.pair >> 32), b = int32_t(top.pair & 0xffffffffu), c = int32_t(sym.size());
    sym.push_back(sym[size_t(a)] + sym[size_t(b)]);
    merges.emplace_back(sym[size_t(a)], sym[size_t(b)]);
    const int32_t step = int32_t(merges.size());
    std::vector<int32_t> affected = std::move(where[top.pair]);
    where.erase(top.pair);
    std::unordered_map<uint64_t, int64_t> changed;
    for (int32_t wi : affected) {
      if (seen[size_t(wi)] == step) continue;
      seen[size_t(wi)] = step;
      Word& w = words[size_t(wi)];
      std::vector<int32_t> out;
      out.reserve(w.s.size());
      bool hit = false;
      for (size_t i = 0; i < w.s.size();) {
        if (i + 1 < w.s.size() && w.s[i] == a && w.s[i + 1] == b) {
          out.push_back(c);
          i += 2;
          hit = true;
        } else {
          out.push_back(w.s[i++]);
        }
      }
      if (!hit) continue;
      for (size_t i = 0; i + 1 < w.s.size(); ++i) changed[key(w.s[i], w.s[i + 1])] -= w.count;
      for (size_t i = 0; i + 1 < out.size(); ++i) {
        const uint64_t k = key(out[i], out[i + 1]);
        changed[k] += w.count;
        if (out[i] == c || out[i + 1] == c) {
          auto& v = where[k];
          if (v.empty() || v.back() != wi) v.push_back(wi);
        }
      }
      w.s = std::move(out);
    }
    for (const auto& [k, d] : changed) {
      if (d == 0) continue;
      int64_t& n = counts[k];
      n += d;
      if (n <= 0) counts.erase(k);
      else heap.push_back({n, k}), std::push_heap(heap.begin(), heap.end());
    }
    if (opt.progress && merges.size() % 256 == 0) opt.progress(int64_t(merges.size()), wanted);
  }
  if (opt.progress) opt.progress(int64_t(merges.size()), wanted);
  return Tokenizer::byte_level_bpe(opt.specials, sym, merges, opt.pre, opt.bos, opt.eos);
}

}  // namespace ocellus::text
