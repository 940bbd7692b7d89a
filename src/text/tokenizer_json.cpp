// Hugging Face tokenizer.json for byte-level BPE: reading (with tokenizer_config.json) and
// writing, and building a tokenizer from its parts (the BPE trainer's output).
#include <nlohmann/json.hpp>

#include "ocellus/io/json.h"
#include "ocellus/core/error.h"
#include "ocellus/io/file.h"
#include "ocellus/io/gguf.h"
#include "ocellus/text/tokenizer.h"
#include "ocellus/text/unicode.h"

namespace ocellus::text {

namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// The family from the pre_tokenizer section: a Split with one of the known patterns, or a
// ByteLevel that applies GPT-2's own pattern.
PreTokenizer detect_pre(const json& pre, const std::string& path) {
  if (pre.is_null()) fail("tokenizer: ", path, ": no pre_tokenizer; only byte-level BPE tokenizer.json is supported");
  const std::string type = pre.value("type", "");
  if (type == "ByteLevel") {
    if (!pre.value("use_regex", true)) fail("tokenizer: ", path, ": ByteLevel pre-tokenizer without its regex");
    return PreTokenizer::Gpt2;
  }
  if (type == "Sequence" && pre.contains("pretokenizers") && pre["pretokenizers"].is_array()) {
    for (const json& p : pre["pretokenizers"]) {
      if (p.value("type", "") != "Split" || !p.contains("pattern")) continue;
      const std::string re = p["pattern"].value("Regex", "");
      if (re.find("\\p{N}{1,3}") != std::string::npos) return PreTokenizer::Llama3;
      if (re.find("[^\\r\\n\\p{L}\\p{N}]?\\p{L}+") != std::string::npos) return PreTokenizer::Qwen2;
      if (re.find("?\\p{L}+| ?\\p{N}+") != std::string::npos) return PreTokenizer::Gpt2;
      fail("tokenizer: ", path, ": pre-tokenizer pattern not recognized: ", re);
    }
    for (const json& p : pre["pretokenizers"])
      if (p.value("type", "") == "ByteLevel" && p.value("use_regex", true)) return PreTokenizer::Gpt2;
  }
  fail("tokenizer: ", path, ": pre_tokenizer of type '", type, "' is not supported");
}

// A special-token field of tokenizer_config.json: a string or {"content": ...}.
std::string token_field(const json& cfg, const char* k) {
  if (!cfg.contains(k) || cfg[k].is_null()) return "";
  if (cfg[k].is_string()) return cfg[k].get<std::string>();
  if (cfg[k].is_object() && cfg[k].contains("content") && cfg[k]["content"].is_string())
    return cfg[k]["content"].get<std::string>();
  return "";
}

const char* pre_regex(PreTokenizer p) {
  switch (p) {
    case PreTokenizer::Gpt2:
      return "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
    case PreTokenizer::Llama3:
      return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
             "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    case PreTokenizer::Qwen2:
      return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
             "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  }
  return "";
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::string& path) {
  if (io::is_directory(path)) return from_hf_json(path + "/tokenizer.json");
  if (path.size() >= 5 && path.substr(path.size() - 5) == ".json") return from_hf_json(path);
  return from_gguf(io::GgufFile::open(path));
}

Tokenizer Tokenizer::from_hf_json(const std::string& path) {
  // tokenizer_config.json beside it: BOS / EOS and whether to add them.
  const std::string cfg_path = io::parent_dir(path) + "/tokenizer_config.json";
  const std::string text = io::read_text_file(path);
  if (!io::is_file(cfg_path)) return from_hf_json_text(text, path, nullptr, cfg_path);
  const std::string cfg = io::read_text_file(cfg_path);
  return from_hf_json_text(text, path, &cfg, cfg_path);
}

// A JSON value of an unexpected type anywhere below (e.g. "byte_fallback": 1) is an error naming
// the file, not nlohmann's bare type_error (found by fuzz/fuzz_tokenizer_json).
Tokenizer Tokenizer::from_hf_json_text(const std::string& json_text, const std::string& path, const std::string* config_text,
                                       const std::string& cfg_path) try {
  const json j = io::parse_json(json_text, path, "tokenizer");
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
    fail("tokenizer: ", path, ": no 'model' section");
  const json& model = j["model"];
  if (model.value("type", "") != "BPE") fail("tokenizer: ", path, ": model type '", model.value("type", ""), "' is not supported (BPE is)");
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail("tokenizer: ", path, ": model.vocab is missing");

  Tokenizer t;
  // Llama-2-style files are SentencePiece converted to BPE: byte fallback, spaces replaced by
  // "▁" in the normalizer (or a Metaspace pre-tokenizer). Their merges rank every split of every
  // token by its score, so the SentencePiece algorithm with score = -rank gives the same ids.
  const std::string norm = j.contains("normalizer") ? j["normalizer"].dump() : "";
  const std::string pre = j.contains("pre_tokenizer") ? j["pre_tokenizer"].dump() : "";
  const bool spm = model.value("byte_fallback", false) &&
                   (norm.find("\xe2\x96\x81") != std::string::npos || pre.find("Metaspace") != std::string::npos);
  if (spm) {
    t.kind_ = Kind::Spm;
    t.add_space_prefix_ = norm.find("Prepend") != std::string::npos || pre.find("\"first\"") != std::string::npos ||
                          pre.find("\"always\"") != std::string::npos;
  } else {
    t.kind_ = Kind::Bpe;
    t.pre_ = detect_pre(j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json(), path);
    t.ignore_merges_ = model.value("ignore_merges", false);
    t.add_space_prefix_ = false;
  }
  // Ids: model.vocab, then added_tokens (which may also re-declare vocabulary entries).
  std::vector<std::pair<int64_t, std::string>> entries;
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    if (!it.value().is_number_integer()) fail("tokenizer: ", path, ": vocab['", it.key(), "'] is not an id");
    entries.emplace_back(it.value().get<int64_t>(), it.key());
  }
  std::vector<std::pair<int64_t, bool>> added;  // id, special
  if (j.contains("added_tokens") && j["added_tokens"].is_array())
    for (const json& a : j["added_tokens"]) {
      if (!a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") || !a["content"].is_string())
        fail("tokenizer: ", path, ": an added_tokens entry lacks id or content");
      entries.emplace_back(a["id"].get<int64_t>(), a["content"].get<std::string>());
      added.emplace_back(a["id"].get<int64_t>(), a.value("special", false));
    }
  int64_t max_id = -1;
  for (const auto& e : entries) {
    if (e.first < 0 || e.first > int64_t(1) << 24) fail("tokenizer: ", path, ": token id ", e.first, " is out of range");
    max_id = std::max(max_id, e.first);
  }
  t.tokens_.assign(size_t(max_id + 1), "");
  t.types_.assign(size_t(max_id + 1), TokenType::Unused);
  for (const auto& e : entries) {
    t.tokens_[size_t(e.first)] = e.second;
    t.types_[size_t(e.first)] = TokenType::Normal;
  }
  for (const auto& a : added) t.types_[size_t(a.first)] = a.second ? TokenType::Control : TokenType::UserDefined;
  if (spm)
    for (size_t i = 0; i < t.tokens_.size(); ++i) {
      const std::string& s = t.tokens_[i];
      if (s.size() == 6 && s.compare(0, 3, "<0x") == 0 && s[5] == '>') t.types_[i] = TokenType::Byte;
    }
  if (spm && model.contains("unk_token") && model["unk_token"].is_string())
    for (size_t i = 0; i < t.tokens_.size(); ++i)
      if (t.tokens_[i] == model["unk_token"].get<std::string>()) t.unk_ = int32_t(i), t.types_[i] = TokenType::Unknown;
  t.scores_.assign(t.tokens_.size(), 0.0f);
  t.build_indexes();

  std::vector<std::pair<std::string, std::string>> merges;
  if (model.contains("merges") && model["merges"].is_array())
    for (const json& m : model["merges"]) {
      if (m.is_string()) {  // "left right"
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ', 1);
        if (sp == std::string::npos) fail("tokenizer: ", path, ": merge '", s, "' is not 'left right'");
        merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["left", "right"]
        merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        fail("tokenizer: ", path, ": a merge is neither \"a b\" nor [\"a\", \"b\"]");
      }
    }
  if (spm) {
    // score(token) = -(rank of the first merge that makes it); single characters rank below all.
    std::vector<bool> made(t.tokens_.size(), false);
    for (size_t r = 0; r < merges.size(); ++r) {
      const int32_t id = t.find(merges[r].first + merges[r].second);
      if (id >= 0 && !made[size_t(id)]) made[size_t(id)] = true, t.scores_[size_t(id)] = -float(r);
    }
  } else {
    t.add_merges(merges);
  }

  if (config_text) {
    const json cfg = io::parse_json(*config_text, cfg_path, "tokenizer");
    if (!cfg.is_object()) fail("tokenizer: ", cfg_path, ": not a JSON object");
    try {
      t.add_bos_ = cfg.value("add_bos_token", false);
      t.add_eos_ = cfg.value("add_eos_token", false);
    } catch (const json::exception& e) {
      fail("tokenizer: ", cfg_path, ": add_bos_token / add_eos_token: ", e.what());
    }
    const std::string bos = token_field(cfg, "bos_token"), eos = token_field(cfg, "eos_token");
    if (!bos.empty()) t.bos_ = t.find(bos);
    if (!eos.empty()) t.eos_ = t.find(eos);
  }
  if (t.eos_ < 0) t.eos_ = t.find("<|endoftext|>");
  return t;
} catch (const json::exception& e) {
  fail("tokenizer: ", path, ": unexpected JSON structure: ", e.what());
}

Tokenizer Tokenizer::byte_level_bpe(const std::vector<std::string>& specials, const std::vector<std::string>& tokens,
                                    const std::vector<std::pair<std::string, std::string>>& merges, PreTokenizer pre,
                                    const std::string& bos, const std::string& eos) {
  Tokenizer t;
  t.kind_ = Kind::Bpe;
  t.pre_ = pre;
  t.add_space_prefix_ = false;
  t.tokens_ = specials;
  t.tokens_.insert(t.tokens_.end(), tokens.begin(), tokens.end());
  t.types_.assign(specials.size(), TokenType::Control);
  t.types_.resize(t.tokens_.size(), TokenType::Normal);
  t.scores_.assign(t.tokens_.size(), 0.0f);
  t.build_indexes();
  t.add_merges(merges);
  t.bos_ = bos.empty() ? -1 : t.find(bos);
  t.eos_ = eos.empty() ? -1 : t.find(eos);
  t.add_bos_ = t.bos_ >= 0;
  return t;
}

void Tokenizer::save_hf_json(const std::string& path) const {
  OCELLUS_CHECK(kind_ == Kind::Bpe, "tokenizer: only byte-level BPE tokenizers are written as tokenizer.json");
  ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  ordered_json added = ordered_json::array();
  for (size_t i = 0; i < tokens_.size(); ++i)
    if (types_[i] == TokenType::Control || types_[i] == TokenType::UserDefined)
      added.push_back({{"id", i}, {"content", tokens_[i]}, {"single_word", false}, {"lstrip", false},
                       {"rstrip", false}, {"normalized", false}, {"special", types_[i] == TokenType::Control}});
  j["added_tokens"] = added;
  j["normalizer"] = nullptr;
  ordered_json split = {{"type", "Split"}, {"pattern", {{"Regex", pre_regex(pre_)}}}, {"behavior", "Isolated"}, {"invert", false}};
  ordered_json bytelevel = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}};
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {split, bytelevel}}};
  j["post_processor"] = nullptr;
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  ordered_json vocab = ordered_json::object();
  for (size_t i = 0; i < tokens_.size(); ++i)
    if (types_[i] != TokenType::Control && types_[i] != TokenType::UserDefined && types_[i] != TokenType::Unused)
      vocab[tokens_[i]] = i;
  ordered_json merges = ordered_json::array();
  // "left right" strings: every tokenizers version reads them (byte-level tokens have no spaces).
  for (const auto& [a, b] : merge_list_) merges.push_back(tokens_[size_t(a)] + " " + tokens_[size_t(b)]);
  j["model"] = {{"type", "BPE"},           {"dropout", nullptr},      {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr}, {"fuse_unk", false},
                {"byte_fallback", false},  {"ignore_merges", ignore_merges_}, {"vocab", vocab},
                {"merges", merges}};
  io::write_text_file_atomically(path, j.dump(1) + "\n");
  // tokenizer_config.json beside it: which tokens open and close a sequence.
  const std::string cfg_path = io::parent_dir(path) + "/tokenizer_config.json";
  ordered_json cfg = {{"add_bos_token", add_bos_}, {"add_eos_token", add_eos_}, {"tokenizer_class", "PreTrainedTokenizerFast"}};
  if (bos_ >= 0) cfg["bos_token"] = tokens_[size_t(bos_)];
  if (eos_ >= 0) cfg["eos_token"] = tokens_[size_t(eos_)];
  io::write_text_file_atomically(cfg_path, cfg.dump(1) + "\n");
}

}  // namespace ocellus::text
