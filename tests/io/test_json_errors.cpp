// Every JSON file people write or edit by hand is read through io::parse_json, so a syntax error
// names the file, the line and the column. The class test below gives each reader the same broken
// text; a reader added later that parses JSON by itself would fail it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "ocellus/core/error.h"
#include "ocellus/eval/eval.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/json.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/text/tokenizer.h"
#include "ocellus/data/llava_json.h"
#include "ocellus/train/trainer.h"
#include "ocellus/vision/preprocess.h"
#include "testutil.h"

namespace ocellus {
namespace {

// "oops" at line 3, column 3 is where the parser stops.
const char* kBroken = "{\n  \"a\": 1,\n  oops\n}\n";

using test::error_of;

TEST(Json, SyntaxErrorNamesLineAndColumn) {
  const std::string e = error_of([] { io::parse_json(kBroken, "my.json", "recipe"); });
  EXPECT_NE(e.find("recipe: my.json: invalid JSON at line 3, column 3: "), std::string::npos) << e;
  EXPECT_EQ(e.find("[json.exception"), std::string::npos) << e;  // the library's tag is not for users
  // The last line, and an empty file.
  const std::string end = error_of([] { io::parse_json("[1, 2,\n3,\n", "x.json", "data"); });
  EXPECT_NE(end.find("x.json: invalid JSON at line 3, column 1"), std::string::npos) << end;
  // A number past a double's range throws out_of_range, not parse_error (found by the fuzzers).
  const std::string big = error_of([] { io::parse_json("{\"image_size\": 1e400}", "big.json", "config"); });
  EXPECT_EQ(big, "config: big.json: invalid JSON: number overflow parsing '1e400'");
  const std::string empty = error_of([] { io::parse_json("", "e.json", "eval"); });
  EXPECT_NE(empty.find("e.json: invalid JSON at line 1, column 1"), std::string::npos) << empty;
}

TEST(Json, EveryReaderReportsFileLineAndColumn) {
  const std::string dir = test::temp_path("json_readers");
  std::filesystem::create_directories(dir);
  auto broken = [&](const std::string& name) {
    const std::string p = dir + "/" + name;
    std::filesystem::create_directories(std::filesystem::path(p).parent_path());
    std::ofstream(p) << kBroken;
    return p;
  };
  // Each reader of a hand-written JSON file, and the file it reads.
  const std::vector<std::pair<std::string, std::function<void()>>> readers = {
      {broken("recipe.json"), [&] { train::read_recipe(dir + "/recipe.json"); }},
      {broken("eval.json"), [&] { eval::read_questions(dir + "/eval.json"); }},
      {broken("data.json"), [&] { data::read_llava_json(dir + "/data.json", data::OnBad::Skip); }},
      {broken("cfg/config.json"), [&] { io::read_hf_config(dir + "/cfg"); }},
      {broken("tok/tokenizer.json"), [&] { text::Tokenizer::from_hf_json(dir + "/tok/tokenizer.json"); }},
      {broken("pre/preprocessor_config.json"), [&] { vision::read_preprocessor_config(dir + "/pre/preprocessor_config.json", {}); }},
      {broken("st/model.safetensors.index.json"), [&] { io::SafetensorsModel::open(dir + "/st"); }},
  };
  for (const auto& [path, read] : readers) {
    const std::string e = error_of(read);
    EXPECT_NE(e.find(path + ": invalid JSON at line 3, column 3"), std::string::npos) << path << ": " << e;
  }
  // tokenizer_config.json beside a good tokenizer.json: its own name in the error.
  const std::string good = dir + "/tok2";
  std::filesystem::create_directories(good);
  std::ofstream(good + "/tokenizer.json")
      << R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}, "added_tokens": [],
            "pre_tokenizer": {"type": "ByteLevel"}})";
  std::ofstream(good + "/tokenizer_config.json") << kBroken;
  const std::string e = error_of([&] { text::Tokenizer::from_hf_json(good + "/tokenizer.json"); });
  EXPECT_NE(e.find(good + "/tokenizer_config.json: invalid JSON at line 3, column 3"), std::string::npos) << e;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ocellus
