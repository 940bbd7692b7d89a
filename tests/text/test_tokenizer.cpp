#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "ocellus/core/error.h"
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "ocellus/io/gguf.h"
#include "ocellus/text/pretokenize.h"
#include "ocellus/text/tokenizer.h"
#include "testutil.h"

using namespace ocellus;
using namespace ocellus::text;

namespace {

const std::string kFix = OCELLUS_FIXTURES;

using test::read_file;

// llama.cpp's test-tokenizer-0 format: strings separated by "\n__ggml_vocab_test__\n"; one line
// of expected ids per string.
struct Case {
  std::string text;
  std::vector<int32_t> ids;
};
std::vector<Case> load_cases(const std::string& vocab) {
  const std::string inp = read_file(kFix + "/tokenizer/" + vocab + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0;;) {
    const size_t at = inp.find(sep, pos);
    if (at == std::string::npos) break;
    texts.push_back(inp.substr(pos, at - pos));
    pos = at + sep.size();
  }
  std::istringstream out(read_file(kFix + "/tokenizer/" + vocab + ".out"));
  std::vector<Case> cases;
  std::string line;
  for (const std::string& t : texts) {
    std::getline(out, line);
    Case c{t, {}};
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) c.ids.push_back(id);
    cases.push_back(c);
  }
  return cases;
}

std::string ids_str(const std::vector<int32_t>& v) {
  std::string s;
  for (int32_t x : v) s += " " + std::to_string(x);
  return s;
}

}  // namespace

class VocabFixture : public ::testing::TestWithParam<const char*> {};

TEST_P(VocabFixture, MatchesReferenceIds) {
  const Tokenizer tok = Tokenizer::from_file(kFix + "/tokenizer/" + GetParam());
  const std::vector<Case> cases = load_cases(GetParam());
  ASSERT_EQ(cases.size(), 46u);
  int matched = 0;
  for (const Case& c : cases) {
    const std::vector<int32_t> got = tok.encode(c.text, /*add_special=*/false);
    EXPECT_EQ(ids_str(got), ids_str(c.ids)) << "text: '" << c.text << "'";
    matched += got == c.ids;
    // Decoding gives the text back (SentencePiece: the prefixed space removed again).
    EXPECT_EQ(tok.decode(got), c.text) << ids_str(got);
  }
  EXPECT_EQ(matched, int(cases.size()));
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, VocabFixture,
                         ::testing::Values("ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"),
                         [](const auto& info) { return std::string(info.param).find("spm") != std::string::npos ? "llama_spm" : "gpt2"; });

// The peer's prompt tokens, reproduced from each model file's own vocabulary (BOS as it says).
TEST(Tokenizer, PeerPromptTokens) {
  const std::string prompt = "The quick brown fox jumps over the lazy dog. 1234 Привет 世界";
  for (const char* m : {"llama-f32", "llama-f16", "llama-q8_0", "llama-q4_0", "qwen2-f32", "phi2-f32", "stablelm-f32"}) {
    SCOPED_TRACE(m);
    const Tokenizer tok = Tokenizer::from_file(kFix + "/peer/tiny-" + std::string(m) + ".gguf");
    EXPECT_EQ(ids_str(tok.encode(prompt)), ids_str(test::read_array<int32_t>(kFix + "/peer/" + std::string(m) + ".tokens.i32")));
  }
}

TEST(Tokenizer, SpecialTokensParsedOnlyWhenAsked) {
  const Tokenizer tok = Tokenizer::from_file(kFix + "/tokenizer/ggml-vocab-llama-spm.gguf");
  const std::vector<int32_t> parsed = tok.encode("<s>Hi</s>", false, true);
  ASSERT_GE(parsed.size(), 3u);
  EXPECT_EQ(parsed.front(), tok.bos());
  EXPECT_EQ(parsed.back(), tok.eos());
  const std::vector<int32_t> plain = tok.encode("<s>Hi</s>", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), tok.bos()), 0);
  EXPECT_GT(plain.size(), parsed.size());
  const Tokenizer gpt = Tokenizer::from_file(kFix + "/tokenizer/ggml-vocab-gpt-2.gguf");
  const std::vector<int32_t> g = gpt.encode("a<|endoftext|>b", false, true);
  EXPECT_EQ(g.size(), 3u);
  EXPECT_EQ(g[1], 50256);
  EXPECT_GT(gpt.encode("a<|endoftext|>b", false, false).size(), 3u);
}

TEST(Tokenizer, StreamingNeverSplitsACharacter) {
  for (const char* v : {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"}) {
    const Tokenizer tok = Tokenizer::from_file(kFix + "/tokenizer/" + v);
    const std::string text = " 🦙 Привет 世界 😶‍🌫️ ok";
    const std::vector<int32_t> ids = tok.encode(text, false);
    Tokenizer::Stream s(tok);
    std::string all;
    for (int32_t id : ids) {
      const std::string part = s.push(id);
      // Every chunk is whole UTF-8 characters.
      size_t i = 0;
      while (i < part.size()) {
        const unsigned char c = static_cast<unsigned char>(part[i]);
        const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
        ASSERT_LE(i + n, part.size()) << v << ": chunk ends inside a character";
        i += n;
      }
      all += part;
    }
    all += s.flush();
    // The stream gives pieces as they are: SentencePiece's prefixed space stays (a generated
    // reply's first "▁" is a real space); decode() removes it.
    EXPECT_EQ(all, tok.kind() == Tokenizer::Kind::Spm ? " " + text : text) << v;
    EXPECT_EQ(tok.decode(ids), text) << v;
  }
}

TEST(Pretokenize, FamilyPatterns) {
  auto words = [](PreTokenizer p, const std::string& s) {
    std::string r;
    for (std::string_view w : pretokenize(p, s)) r += "[" + std::string(w) + "]";
    return r;
  };
  EXPECT_EQ(words(PreTokenizer::Gpt2, "Hello world's  12345 !!x\n\n y"),
            "[Hello][ world]['s][ ][ 12345][ !!][x][\n\n][ y]");
  EXPECT_EQ(words(PreTokenizer::Llama3, "Hello WORLD'S 12345 !!x\n\n y"),
            "[Hello][ WORLD]['S][ ][123][45][ !!][x][\n\n][ y]");
  EXPECT_EQ(words(PreTokenizer::Qwen2, "a 123"), "[a][ ][1][2][3]");
  EXPECT_EQ(words(PreTokenizer::Llama3, "x  \n  \n z"), "[x][  \n  \n][ z]");
  EXPECT_THROW(pretokenizer_from_name("bogus"), Error);
}

TEST(Tokenizer, HfJsonRoundTrip) {
  const Tokenizer gguf = Tokenizer::from_file(kFix + "/tokenizer/ggml-vocab-gpt-2.gguf");
  const std::string dir = test::temp_path("tokjson");
  ASSERT_EQ(std::system(("mkdir -p " + dir).c_str()), 0);
  gguf.save_hf_json(dir + "/tokenizer.json");
  const Tokenizer json = Tokenizer::from_file(dir);  // the folder
  EXPECT_EQ(json.n_vocab(), gguf.n_vocab());
  EXPECT_EQ(json.eos(), gguf.eos());
  EXPECT_TRUE(json.is_special(50256));
  for (const Case& c : load_cases("ggml-vocab-gpt-2.gguf"))
    EXPECT_EQ(ids_str(json.encode(c.text, false)), ids_str(c.ids)) << c.text;
  // Written again from what was read: the same file.
  json.save_hf_json(dir + "/again.json");
  EXPECT_EQ(read_file(dir + "/tokenizer.json"), read_file(dir + "/again.json"));
  EXPECT_THROW(Tokenizer::from_file(kFix + "/tokenizer/ggml-vocab-gpt-2.gguf.out"), Error);
}

// A Llama-2-style tokenizer.json (SentencePiece converted to BPE, as transformers' LlamaConverter
// writes it: every split of every token a merge, ranked by the token's score; byte fallback;
// spaces to "▁" in the normalizer), made from the fixture vocabulary, reproduces the reference ids.
TEST(Tokenizer, SentencePieceTokenizerJson) {
  io::GgufFile g = io::GgufFile::open(kFix + "/tokenizer/ggml-vocab-llama-spm.gguf");
  const std::vector<std::string> toks = g.get_strings("tokenizer.ggml.tokens");
  const std::vector<float> scores = g.get_floats("tokenizer.ggml.scores");
  const std::vector<int64_t> types = g.get_ints("tokenizer.ggml.token_type");
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < toks.size(); ++i) vocab[toks[i]] = i, index[toks[i]] = i;
  struct M { float score; size_t a, b; std::string s; };
  std::vector<M> merges;
  for (size_t i = 0; i < toks.size(); ++i) {
    if (types[i] != 1) continue;
    const std::string& t = toks[i];
    for (size_t k = 1; k < t.size(); ++k) {
      if ((static_cast<unsigned char>(t[k]) & 0xc0) == 0x80) continue;  // inside a character
      auto a = index.find(t.substr(0, k)), b = index.find(t.substr(k));
      if (a != index.end() && b != index.end()) merges.push_back({scores[i], a->second, b->second, t.substr(0, k) + " " + t.substr(k)});
    }
  }
  std::stable_sort(merges.begin(), merges.end(), [](const M& x, const M& y) {
    return x.score != y.score ? x.score > y.score : (x.a != y.a ? x.a < y.a : x.b < y.b);
  });
  nlohmann::ordered_json m = nlohmann::ordered_json::array();
  for (const M& x : merges) m.push_back(x.s);
  nlohmann::ordered_json j;
  j["added_tokens"] = {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                       {{"id", 1}, {"content", "<s>"}, {"special", true}},
                       {{"id", 2}, {"content", "</s>"}, {"special", true}}};
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", "\xe2\x96\x81"}},
                                                              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xe2\x96\x81"}}}}};
  j["pre_tokenizer"] = nullptr;
  j["model"] = {{"type", "BPE"}, {"unk_token", "<unk>"}, {"byte_fallback", true}, {"vocab", vocab}, {"merges", m}};
  const std::string dir = test::temp_path("spmjson");
  ASSERT_EQ(std::system(("mkdir -p " + dir).c_str()), 0);
  std::ofstream(dir + "/tokenizer.json") << j.dump();
  std::ofstream(dir + "/tokenizer_config.json") << R"({"add_bos_token": true, "bos_token": "<s>", "eos_token": "</s>"})";
  const Tokenizer tok = Tokenizer::from_file(dir);
  EXPECT_EQ(tok.kind(), Tokenizer::Kind::Spm);
  EXPECT_EQ(tok.bos(), 1);
  EXPECT_TRUE(tok.add_bos());
  for (const Case& c : load_cases("ggml-vocab-llama-spm.gguf"))
    EXPECT_EQ(ids_str(tok.encode(c.text, false)), ids_str(c.ids)) << c.text;
}

// Found by fuzz/fuzz_tokenizer_json: a SentencePiece vocabulary entry with "▁" one or two bytes
// in ("a▁b") made the loader read before the string's start (std::out_of_range escaped). It
// loads, and text through it round-trips.
TEST(Tokenizer, SentencePieceTokenWithSpaceMarkInsideLoads) {
  nlohmann::ordered_json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    vocab[buf] = vocab.size();
  }
  for (const char* t : {"\xe2\x96\x81", "a", "b", "a\xe2\x96\x81", "a\xe2\x96\x81" "b", "\xe2\x96\x81" "a"}) vocab[t] = vocab.size();
  nlohmann::ordered_json j;
  j["added_tokens"] = {{{"id", 0}, {"content", "<unk>"}, {"special", true}}, {{"id", 1}, {"content", "<s>"}, {"special", true}}};
  j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xe2\x96\x81"}};
  j["pre_tokenizer"] = nullptr;
  j["model"] = {{"type", "BPE"}, {"byte_fallback", true}, {"vocab", vocab},
                {"merges", {"a \xe2\x96\x81", "a\xe2\x96\x81 b", "\xe2\x96\x81 a"}}};
  const Tokenizer tok = Tokenizer::from_hf_json_text(j.dump(), "spm.json", nullptr, "tokenizer_config.json");
  EXPECT_EQ(tok.kind(), Tokenizer::Kind::Spm);
  EXPECT_EQ(tok.decode(tok.encode("a b a", false)), "a b a");
}

// Found by fuzz/fuzz_tokenizer_json: a value of the wrong JSON type escaped as nlohmann's bare
// type_error (no file named). Each is an ocellus error naming the file it is in.
TEST(Tokenizer, WrongJsonTypesAreErrorsNamingTheFile) {
  const auto error = [](const std::string& json, const std::string* cfg) {
    try {
      Tokenizer::from_hf_json_text(json, "dir/tokenizer.json", cfg, "dir/tokenizer_config.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string ok = R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                             "pre_tokenizer": {"type": "ByteLevel", "use_regex": true}})";
  ASSERT_EQ(error(ok, nullptr), "no error");
  EXPECT_NE(error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "byte_fallback": 1}})", nullptr).find("dir/tokenizer.json: "),
            std::string::npos);
  EXPECT_NE(error(R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": 3}]}})",
                  nullptr).find("dir/tokenizer.json: "),
            std::string::npos);
  const std::string bad_flag = R"({"add_bos_token": 1})", not_object = "[1]";
  EXPECT_NE(error(ok, &bad_flag).find("dir/tokenizer_config.json: add_bos_token"), std::string::npos) << error(ok, &bad_flag);
  EXPECT_NE(error(ok, &not_object).find("dir/tokenizer_config.json: not a JSON object"), std::string::npos);
}
