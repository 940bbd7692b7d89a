#include "ocellus/text/tokenizer.h"

#include <algorithm>

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/text/unicode.h"

namespace ocellus::text {

namespace key = io::gguf::key;

namespace {

const std::string kSpace = "\xe2\x96\x81";  // "▁", SentencePiece's space

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

// Words and chunks repeat in any text: each distinct one is encoded once per call.
class PieceCache {
 public:
  template <typename Encode>
  void append(std::string_view piece, std::vector<int32_t>& out, Encode encode) {
    auto it = map_.find(piece);
    if (it == map_.end()) {
      std::vector<int32_t> ids;
      encode(piece, ids);
      it = map_.emplace(piece, std::move(ids)).first;
    }
    out.insert(out.end(), it->second.begin(), it->second.end());
  }

 private:
  std::unordered_map<std::string_view, std::vector<int32_t>> map_;
};

}  // namespace

// ---- loading --------------------------------------------------------------------------------

Tokenizer Tokenizer::from_gguf(const io::GgufFile& f) {
  Tokenizer t;
  const std::string model = f.get_string(key::kTokModel);
  if (model == "llama") t.kind_ = Kind::Spm;
  else if (model == "gpt2") t.kind_ = Kind::Bpe;
  else fail("tokenizer: ", f.path(), ": tokenizer.ggml.model '", model, "' is not supported (llama, gpt2 are)");
  t.tokens_ = f.get_strings(key::kTokTokens);
  const size_t n = t.tokens_.size();
  if (n == 0) fail("tokenizer: ", f.path(), ": empty vocabulary");
  if (n > size_t(INT32_MAX)) fail("tokenizer: ", f.path(), ": vocabulary too large");
  if (f.has(key::kTokScores)) {
    t.scores_ = f.get_floats(key::kTokScores);
    if (t.scores_.size() != n) fail("tokenizer: ", f.path(), ": ", t.scores_.size(), " scores for ", n, " tokens");
  } else {
    t.scores_.assign(n, 0.0f);
  }
  t.types_.assign(n, TokenType::Normal);
  if (f.has(key::kTokTypes)) {
    const std::vector<int64_t> ty = f.get_ints(key::kTokTypes);
    if (ty.size() != n) fail("tokenizer: ", f.path(), ": ", ty.size(), " token types for ", n, " tokens");
    for (size_t i = 0; i < n; ++i) t.types_[i] = ty[i] >= 0 && ty[i] <= 6 ? TokenType(ty[i]) : TokenType::Normal;
  }
  auto id_key = [&](const char* k, int32_t fallback) {
    const int64_t v = f.get_int(k, fallback);
    if (v != -1 && (v < 0 || size_t(v) >= n)) fail("tokenizer: ", f.path(), ": ", k, " = ", v, " is not a token id");
    return int32_t(v);
  };
  t.bos_ = id_key(key::kTokBos, -1);
  t.eos_ = id_key(key::kTokEos, -1);
  t.unk_ = id_key(key::kTokUnk, -1);
  t.add_bos_ = f.get_bool(key::kTokAddBos, t.kind_ == Kind::Spm);  // SentencePiece adds BOS unless told not to
  t.add_eos_ = f.get_bool(key::kTokAddEos, false);
  if (t.kind_ == Kind::Spm) {
    t.add_space_prefix_ = f.get_bool("tokenizer.ggml.add_space_prefix", true);
  } else {
    t.pre_ = pretokenizer_from_name(f.get_string(key::kTokPre, "default"));
    t.ignore_merges_ = t.pre_ == PreTokenizer::Llama3;
    t.add_space_prefix_ = false;
  }
  t.build_indexes();
  if (t.kind_ == Kind::Bpe) {
    const std::vector<std::string> merges = f.get_strings(key::kTokMerges);
    std::vector<std::pair<std::string, std::string>> pairs;
    pairs.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); ++r) {
      const std::string& m = merges[r];
      const size_t sp = m.find(' ', 1);
      if (sp == std::string::npos) fail("tokenizer: ", f.path(), ": merge #", r, " '", m, "' is not 'left right'");
      pairs.emplace_back(m.substr(0, sp), m.substr(sp + 1));
    }
    t.add_merges(pairs);
  }
  return t;
}

void Tokenizer::save_gguf(io::GgufWriter& w) const {
  using io::GgufValue;
  w.set(key::kTokModel, GgufValue::str(kind_ == Kind::Spm ? "llama" : "gpt2"));
  w.set(key::kTokTokens, GgufValue::strings(tokens_));
  std::vector<int32_t> types;
  for (TokenType t : types_) types.push_back(int32_t(t));
  w.set(key::kTokTypes, GgufValue::ints(types));
  if (kind_ == Kind::Spm) {
    w.set(key::kTokScores, GgufValue::floats(scores_));
    w.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(add_space_prefix_));
  } else {
    const PreTokenizer p = pre_;
    w.set(key::kTokPre, GgufValue::str(p == PreTokenizer::Llama3 ? "llama-bpe" : p == PreTokenizer::Qwen2 ? "qwen2" : "gpt-2"));
    std::vector<std::string> merges;
    for (const auto& [a, b] : merge_list_) merges.push_back(tokens_[size_t(a)] + " " + tokens_[size_t(b)]);
    w.set(key::kTokMerges, GgufValue::strings(merges));
  }
  if (bos_ >= 0) w.set(key::kTokBos, GgufValue::u32(uint32_t(bos_)));
  if (eos_ >= 0) w.set(key::kTokEos, GgufValue::u32(uint32_t(eos_)));
  if (unk_ >= 0) w.set(key::kTokUnk, GgufValue::u32(uint32_t(unk_)));
  w.set(key::kTokAddBos, GgufValue::boolean(add_bos_));
  w.set(key::kTokAddEos, GgufValue::boolean(add_eos_));
}

void Tokenizer::add_merges(const std::vector<std::pair<std::string, std::string>>& merges) {
  merges_.clear();
  merge_list_.clear();
  for (size_t r = 0; r < merges.size(); ++r) {
    const int32_t a = find(merges[r].first), b = find(merges[r].second), ab = find(merges[r].first + merges[r].second);
    if (a < 0 || b < 0 || ab < 0) continue;  // a merge of tokens the vocabulary lacks can never apply
    merges_.emplace(pair_key(a, b), std::make_pair(int32_t(merge_list_.size()), ab));
    merge_list_.emplace_back(a, b);
  }
}

void Tokenizer::build_indexes() {
  index_.reserve(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i) index_.emplace(tokens_[i], int32_t(i));  // first wins
  byte_ids_.fill(-1);
  char buf[8];
  for (int b = 0; b < 256; ++b) {
    if (kind_ == Kind::Spm) {
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      byte_ids_[size_t(b)] = find(buf);
    } else {
      byte_ids_[size_t(b)] = find(byte_to_unicode(uint8_t(b)));
    }
  }
  specials_.clear();
  for (size_t i = 0; i < tokens_.size(); ++i)
    if ((types_[i] == TokenType::Control || types_[i] == TokenType::UserDefined) && !tokens_[i].empty())
      specials_.push_back(int32_t(i));
  spm_chunks_ = kind_ == Kind::Spm;
  for (const std::string& t : tokens_)
    for (size_t at = t.find(kSpace, 1); at != std::string::npos && spm_chunks_; at = t.find(kSpace, at + 1))
      if (at < kSpace.size() || t.compare(at - kSpace.size(), kSpace.size(), kSpace) != 0) spm_chunks_ = false;
  std::stable_sort(specials_.begin(), specials_.end(),
                   [&](int32_t a, int32_t b) { return tokens_[size_t(a)].size() > tokens_[size_t(b)].size(); });
}

const std::string& Tokenizer::token(int32_t id) const {
  OCELLUS_CHECK(id >= 0 && id < n_vocab(), "tokenizer: token id ", id, " outside the vocabulary of ", n_vocab());
  return tokens_[size_t(id)];
}

bool Tokenizer::is_special(int32_t id) const {
  const TokenType t = type(id);
  return t == TokenType::Control || t == TokenType::UserDefined;
}

int32_t Tokenizer::find(std::string_view tok) const {
  auto it = index_.find(tok);
  return it == index_.end() ? -1 : it->second;
}

// ---- encoding -------------------------------------------------------------------------------

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special,
                                       bool at_start) const {
  std::vector<int32_t> out;
  if (add_special && add_bos_ && bos_ >= 0) out.push_back(bos_);
  // Fragments: text between special tokens (when parsing them), and the special tokens.
  bool prev_special = at_start;  // SentencePiece prefixes a space to the first text and after specials
  size_t pos = 0;
  while (pos < text.size()) {
    size_t next = text.size();
    int32_t sid = -1;
    if (parse_special)
      for (int32_t s : specials_) {  // earliest occurrence; the longest at the same position
        const size_t at = text.find(tokens_[size_t(s)], pos);
        if (at < next) next = at, sid = s;
      }
    if (next > pos) {
      std::string_view frag = text.substr(pos, next - pos);
      if (kind_ == Kind::Spm) {
        std::string escaped;
        if (add_space_prefix_ && prev_special) escaped = " ";
        escaped += frag;
        encode_spm(escaped, out);
      } else {
        encode_bpe(frag, out);
      }
      prev_special = false;
    }
    if (sid >= 0) {
      out.push_back(sid);
      prev_special = true;
      next += tokens_[size_t(sid)].size();
    }
    pos = next;
  }
  if (add_special && add_eos_ && eos_ >= 0) out.push_back(eos_);
  return out;
}

// SentencePiece (BPE by score): spaces become "▁"; adjacent pieces merge, highest-scoring pair
// first (leftmost on ties), while the merged text is in the vocabulary; what is left outside
// the vocabulary falls back to byte tokens.
void Tokenizer::encode_spm(std::string_view raw, std::vector<int32_t>& out) const {
  std::string s;
  s.reserve(raw.size() + raw.size() / 2);
  for (char c : raw) {
    if (c == ' ') s += kSpace;
    else s += c;
  }
  if (!spm_chunks_) {
    spm_merge(s, out);
    return;
  }
  // No vocabulary piece has a "▁" after another character, so no merge crosses the point
  // before a "▁" that follows a non-"▁": the text splits there into chunks ("▁*" then the
  // rest), each merged once per call however often it repeats.
  PieceCache cache;
  const std::string_view sv(s);
  size_t start = 0;
  for (size_t i = 0; i <= s.size();) {
    const bool boundary = i == s.size() || (i > start && sv.compare(i, 3, kSpace) == 0 && sv.compare(i - 3, 3, kSpace) != 0);
    if (boundary && i > start) {
      cache.append(sv.substr(start, i - start), out, [&](std::string_view c, std::vector<int32_t>& ids) { spm_merge(c, ids); });
      start = i;
    }
    if (i == s.size()) break;
    i += sv.compare(i, 3, kSpace) == 0 ? 3 : 1;
  }
}

void Tokenizer::spm_merge(std::string_view s, std::vector<int32_t>& out) const {
  struct Sym {
    int prev, next;
    size_t start, len;
  };
  // Scratch kept per thread: chunks are short and many, allocation would dominate.
  static thread_local std::vector<Sym> sym;
  sym.clear();
  for (size_t i = 0; i < s.size();) {
    const size_t len = std::min(size_t(utf8_len(static_cast<unsigned char>(s[i]))), s.size() - i);
    sym.push_back({int(sym.size()) - 1, int(sym.size()) + 1, i, len});
    i += len;
  }
  if (sym.empty()) return;
  sym.back().next = -1;
  struct Bigram {
    int left, right;
    float score;
    size_t len;
    bool operator<(const Bigram& o) const { return score < o.score || (score == o.score && left > o.left); }
  };
  static thread_local std::vector<Bigram> q;  // a max-heap
  q.clear();
  auto try_add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const size_t len = sym[size_t(l)].len + sym[size_t(r)].len;
    const int32_t id = find(s.substr(sym[size_t(l)].start, len));
    if (id < 0) return;
    q.push_back({l, r, scores_[size_t(id)], len});
    std::push_heap(q.begin(), q.end());
  };
  for (size_t i = 1; i < sym.size(); ++i) try_add(int(i) - 1, int(i));
  while (!q.empty()) {
    std::pop_heap(q.begin(), q.end());
    const Bigram b = q.back();
    q.pop_back();
    Sym& l = sym[size_t(b.left)];
    Sym& r = sym[size_t(b.right)];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.len || l.next != b.right) continue;  // stale
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[size_t(r.next)].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }
  for (int i = 0; i >= 0; i = sym[size_t(i)].next) {
    const Sym& x = sym[size_t(i)];
    const int32_t id = find(s.substr(x.start, x.len));
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    for (size_t k = 0; k < x.len; ++k) {
      const int32_t id = byte_ids_[static_cast<unsigned char>(s[x.start + k])];
      if (id >= 0) out.push_back(id);
      else if (unk_ >= 0) out.push_back(unk_);
      else fail("tokenizer: no token for byte ", int(static_cast<unsigned char>(s[x.start + k])), " and no <unk>");
    }
  }
}

void Tokenizer::encode_bpe(std::string_view text, std::vector<int32_t>& out) const {
  PieceCache cache;
  for (std::string_view w : pretokenize(pre_, text))
    cache.append(w, out, [&](std::string_view word, std::vector<int32_t>& ids) { bpe_word(word, ids); });
}

// One word: its bytes as GPT-2 byte characters, then the lowest-ranked adjacent merge, again
// and again, until none applies.
void Tokenizer::bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    std::string mapped;
    for (char c : word) mapped += byte_to_unicode(static_cast<uint8_t>(c));
    const int32_t whole = find(mapped);
    if (whole >= 0) {
      out.push_back(whole);
      return;
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  for (char c : word) {
    const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
    if (id >= 0) ids.push_back(id);
    else if (unk_ >= 0) ids.push_back(unk_);
    else fail("tokenizer: the vocabulary has no token for byte ", int(static_cast<uint8_t>(c)));
  }
  while (ids.size() > 1) {
    int32_t best_rank = INT32_MAX, best_id = -1;
    size_t best_at = 0;
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      auto it = merges_.find(pair_key(ids[i], ids[i + 1]));
      if (it != merges_.end() && it->second.first < best_rank) {
        best_rank = it->second.first;
        best_id = it->second.second;
        best_at = i;
      }
    }
    if (best_id < 0) break;
    // Merge every non-overlapping occurrence of the best pair, left to right, as the reference
    // BPE does in one step.
    const int32_t a = ids[best_at], b = ids[best_at + 1];
    size_t w = 0;
    for (size_t i = 0; i < ids.size();) {
      if (i + 1 < ids.size() && ids[i] == a && ids[i + 1] == b) {
        ids[w++] = best_id;
        i += 2;
      } else {
        ids[w++] = ids[i++];
      }
    }
    ids.resize(w);
  }
  out.insert(out.end(), ids.begin(), ids.end());
}

// ---- decoding -------------------------------------------------------------------------------

std::string Tokenizer::piece(int32_t id, bool skip_special) const {
  const std::string& t = token(id);
  const TokenType ty = types_[size_t(id)];
  if (ty == TokenType::Control || ty == TokenType::Unknown) return skip_special ? "" : t;
  if (ty == TokenType::UserDefined) return t;
  if (kind_ == Kind::Spm) {
    if (ty == TokenType::Byte && t.size() == 6) return std::string(1, char(std::stoi(t.substr(3, 2), nullptr, 16)));
    std::string r;
    for (size_t i = 0; i < t.size();) {
      if (t.compare(i, 3, kSpace) == 0) {
        r += ' ';
        i += 3;
      } else {
        r += t[i++];
      }
    }
    return r;
  }
  std::string r;
  for (size_t i = 0; i < t.size();) {
    int len;
    const uint32_t cp = utf8_decode(t, i, &len);
    const int b = unicode_to_byte(cp);
    if (b >= 0) r += char(b);
    else r.append(t, i, size_t(len));
    i += size_t(len);
  }
  return r;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string r;
  bool first_text = true;
  for (int32_t id : ids) {
    std::string p = piece(id, skip_special);
    if (kind_ == Kind::Spm && add_space_prefix_ && first_text && !is_special(id) && !p.empty()) {
      if (p[0] == ' ') p.erase(0, 1);
      first_text = false;
    }
    r += p;
  }
  return r;
}

std::string Tokenizer::Stream::push(int32_t id) {
  pending_ += t_.piece(id, skip_);
  return utf8_take_valid(pending_);
}

std::string Tokenizer::Stream::flush() {
  std::string out;
  if (!pending_.empty()) out = "\xef\xbf\xbd";  // an incomplete character at the end
  pending_.clear();
  return out;
}

}  // namespace ocellus::text
