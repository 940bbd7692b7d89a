// The class test for "nonsense values accepted silently": every numeric option of every verb, as
// its --help lists it, either carries a range that the command enforces, or is checked by the
// library it feeds (listed below with the field it is checked as), or takes any value by meaning
// (listed with why). A numeric option added later without a check fails here.
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "cliutil.h"

namespace ocellus {
namespace {

const std::vector<std::string> kVerbs = {"info", "inspect", "synth", "tokenize", "train-tokenizer", "generate", "logits", "embed",
                                         "run", "chat", "cache", "data fashion-vqa", "init", "eval", "train", "eval-fusion"};

// Options checked by the library when the verb runs: the field named in its error.
const std::map<std::string, std::string> kCheckedByLibrary = {
    {"init --n-embd", "n_embd"},          {"init --n-ff", "n_ff"},
    {"init --n-layer", "n_layer"},        {"init --n-head", "n_head"},
    {"init --n-head-kv", "n_head_kv"},    {"init --n-ctx", "n_ctx"},
    {"init --image-size", "image_size"},  {"init --patch-size", "patch_size"},
    {"init --vision-embd", "vision_embd"}, {"init --vision-ff", "vision_ff"},
    {"init --vision-layers", "vision_layers"}, {"init --vision-heads", "vision_heads"},
    {"init --connector-blocks", "connector_blocks"}, {"init --merge", "merge"},
    {"init --feature-layer", "feature_layer"},  // negative is meaningful (-1: the last block); checked against the tower
};

struct NumericOption {
  std::string verb, name, type;  // type: INT, UINT or FLOAT
  bool ranged = false;
  double lo = 0;
};

std::vector<NumericOption> numeric_options() {
  std::vector<NumericOption> out;
  const std::regex line(R"(^\s+(?:-\w,)?(--[\w-]+) (INT|UINT|FLOAT)(?::\w+ in \[([-0-9.e+]+) - ([-0-9.e+]+)\])?)");
  for (const std::string& verb : kVerbs) {
    const auto r = test::run_cli(verb + " --help");
    EXPECT_EQ(r.status, 0) << verb;
    std::istringstream in(r.out);
    for (std::string l; std::getline(in, l);) {
      std::smatch m;
      if (!std::regex_search(l, m, line)) continue;
      NumericOption o{verb, m[1], m[2]};
      if (m[3].matched) o.ranged = true, o.lo = std::stod(m[3]);
      out.push_back(o);
    }
  }
  return out;
}

TEST(CliNumericOptions, EveryOneIsChecked) {
  const auto opts = numeric_options();
  ASSERT_GT(opts.size(), 30u);  // the parse found the options
  const std::string tok = std::string(OCELLUS_FIXTURES) + "/tokenizer/ggml-vocab-gpt-2.gguf";
  std::set<std::string> library_seen;
  for (const NumericOption& o : opts) {
    const std::string key = o.verb + " " + o.name;
    if (o.ranged) {  // below the range: refused while parsing, naming the option and the range
      const std::string below = o.type == "FLOAT" ? std::to_string(o.lo - 0.5) : std::to_string(int64_t(o.lo) - 1);
      const auto r = test::run_cli(o.verb + " " + o.name + " " + below);
      EXPECT_EQ(r.status, 2) << key << " " << below << ": " << r.err;
      EXPECT_NE(r.err.find(o.name + ": Value " + below), std::string::npos) << key << ": " << r.err;
    } else if (o.type == "UINT") {  // seeds: any unsigned value; a negative one is refused
      const auto r = test::run_cli(o.verb + " " + o.name + " -1");
      EXPECT_EQ(r.status, 2) << key << ": " << r.err;
      EXPECT_NE(r.err.find(o.name), std::string::npos) << key << ": " << r.err;
    } else {
      const auto it = kCheckedByLibrary.find(key);
      ASSERT_NE(it, kCheckedByLibrary.end()) << key << " takes any " << o.type << ": give it a range, or list why not";
      library_seen.insert(key);
      const std::string dir = test::temp_path("numeric_init");
      const auto r = test::run_cli(o.verb + " -o " + dir + " --tokenizer " + tok + " " + o.name + " -1000000");
      EXPECT_EQ(r.status, 1) << key << ": " << r.err;
      EXPECT_NE(r.err.find("init: " + it->second), std::string::npos) << key << ": " << r.err;
    }
  }
  EXPECT_EQ(library_seen.size(), kCheckedByLibrary.size()) << "an option listed as checked by the library is gone from --help";
}

}  // namespace
}  // namespace ocellus
