// The CLI verbs on the fixture files: what they print and their exit status (0 on success; a
// clear `ocellus: error: ...` line and 1 on failure). These were CTest regular-expression entries,
// which cannot see the exit status.
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "cliutil.h"
#include "testutil.h"

using namespace ocellus;

namespace {

const std::string kFix = std::string(OCELLUS_FIXTURES);
const std::string kPeer = kFix + "/peer/";
const std::string kImages = kFix + "/images/";
const std::string kTok = kFix + "/tokenizer/";

bool matches(const std::string& text, const std::string& re) { return std::regex_search(text, std::regex(re)); }

}  // namespace

TEST(CliVerbs, InspectFixtures) {
  const test::CliResult r = test::run_cli("inspect " + kPeer + "tiny-llama-q8_0.gguf " + kPeer + "tiny-mmproj-clip-f16.gguf --tensors");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(matches(r.out, "blk.1.ffn_down.weight +q8_0 +\\[64, 160\\]")) << r.out;
}

TEST(CliVerbs, InspectCorruptFileIsOneErrorLine) {
  const test::CliResult r = test::run_cli("inspect " + kImages + "truncated.jpg");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(matches(r.err, "^ocellus: error: .*truncated.jpg: not a model file[^\n]*\n$")) << r.err;
}

TEST(CliVerbs, SynthThenInspect) {
  const std::string out = test::temp_path("synth-cli.gguf");
  const test::CliResult s = test::run_cli("synth tiny-phi2 --dtype q4_0 -o " + out);
  ASSERT_EQ(s.status, 0) << s.err;
  const test::CliResult r = test::run_cli("inspect " + out);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(matches(r.out, "architecture: +phi2[\\s\\S]*q4_0 x")) << r.out;
  std::remove(out.c_str());
}

// `ocellus info` names OpenBLAS's kernel set and the OPENBLAS_CORETYPE that chose it.
TEST(CliVerbs, InfoNamesOpenblasCore) {
  const test::CliResult r = test::run_cli("info", "OPENBLAS_CORETYPE=Haswell");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("openblas core: Haswell (OPENBLAS_CORETYPE=Haswell)"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("model"), std::string::npos) << r.out;  // the machine only, nothing about the bundled model
}

TEST(CliVerbs, TokenizeIds) {
  const test::CliResult a = test::run_cli("tokenize -m " + kTok + "ggml-vocab-llama-spm.gguf --ids 'Hello world'");
  EXPECT_EQ(a.status, 0) << a.err;
  EXPECT_EQ(a.out, "15043 3186\n");
  const test::CliResult b = test::run_cli("tokenize -m " + kTok + "ggml-vocab-llama-spm.gguf --ids --bos 'Hello world'");
  EXPECT_EQ(b.status, 0) << b.err;
  EXPECT_EQ(b.out, "1 15043 3186\n");
}

TEST(CliVerbs, TokenizePieces) {
  const test::CliResult r = test::run_cli("tokenize -m " + kTok + "ggml-vocab-gpt-2.gguf 'Hello world'");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(matches(r.out, "15496  'Hello'\n +995  ' world'")) << r.out;
}

TEST(CliVerbs, Generate) {
  const test::CliResult r =
      test::run_cli("generate -m " + kPeer + "tiny-llama-q4_0.gguf -p 'Once upon a time' -n 8 --temp 0.7 --seed 1");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(matches(r.out + r.err, "prefill: 5 tokens in [\\s\\S]*decode: 8 tokens in")) << r.out << r.err;
}

TEST(CliVerbs, RunWithImage) {
  const test::CliResult r = test::run_cli("run -m " + kPeer + "tiny-llama-f32.gguf --mmproj " + kPeer +
                                          "tiny-mmproj-clip-f32.gguf --image " + kImages +
                                          "rocket.jpg -p 'What is in the picture?' -n 4");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(matches(r.out + r.err, "image encode: [0-9.]+ ms; prefill: [0-9]+ tokens[\\s\\S]*decode: 4 tokens")) << r.out << r.err;
}

TEST(CliVerbs, EmbedCorruptImageIsOneErrorLine) {
  const std::string out = test::temp_path("embed-corrupt.f32");
  const test::CliResult r = test::run_cli("embed --mmproj " + kPeer + "tiny-mmproj-clip-f32.gguf --image " + kImages +
                                          "truncated.jpg -o " + out);
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(matches(r.err, "^ocellus: error: .*truncated.jpg: corrupt JPEG[^\n]*\n$")) << r.err;
}

// A damaged image in a chat is reported and the conversation goes on (exit 0).
TEST(CliVerbs, ChatGoesOnAfterABadImage) {
  const test::CliResult r = test::run_cli(
      "chat -m " + kPeer + "tiny-llama-f32.gguf --mmproj " + kPeer + "tiny-mmproj-clip-f32.gguf -n 3", "",
      "/image " + kImages + "rocket.jpg\nWhat is this?\n/image " + kImages + "truncated.jpg\nAnd this one?\n/quit\n");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(matches(r.out + r.err,
                      "encoding 1 image[\\s\\S]*prefill [0-9]+ tokens[\\s\\S]*truncated.jpg: corrupt JPEG[\\s\\S]*conversation goes on[\\s\\S]*"
                      "prefill [0-9]+ tokens[\\s\\S]*decode 3 tokens"))
      << r.out << r.err;
}

TEST(CliVerbs, TrainMissingRecipe) {
  const test::CliResult r = test::run_cli("train --recipe /nonexistent/recipe.json");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(matches(r.err, "^ocellus: error: .*/nonexistent/recipe.json")) << r.err;
}

TEST(CliVerbs, EvalFixture) {
  const std::string out = test::temp_path("eval-cli.json");
  const test::CliResult r = test::run_cli("eval -m " + kPeer + "tiny-llama-f32.gguf --mmproj " + kPeer +
                                          "tiny-mmproj-clip-f32.gguf --questions " OCELLUS_TESTS_DIR
                                          "/eval/eval_questions.json --images " + kImages + " --max-tokens 3 -o " + out);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(matches(r.out, "overall +3 [\\s\\S]*yes/no \\(POPE\\): accuracy [\\s\\S]*wrote " + out)) << r.out;
  EXPECT_FALSE(test::read_file(out).empty());
  std::remove(out.c_str());
}

// `run` without -m looks for the bundled model; where there is none, it says where it looked.
TEST(CliVerbs, RunDefaultModelMissing) {
  const test::CliResult r = test::run_cli("run --image x.png -p hi", "OCELLUS_DEFAULT_MODEL=/nonexistent/fashion-vlm");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(matches(r.err, "ocellus: error: no -m given and no bundled model \\(model.gguf \\+ mmproj.gguf\\) in "
                             "/nonexistent/fashion-vlm"))
      << r.err;
}

// The bundled model loads through the default path (no -m) and describes its example scene (a
// dress in the top left, a shirt in the top right) as it did when it was trained.
TEST(CliVerbs, BundledModelDescribesExample) {
  const test::CliResult r =
      test::run_cli("run --image " OCELLUS_TESTS_DIR "/../models/fashion-vlm/example.png -p 'Describe the picture.'");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("a dress in the top left and a ", 0), 0u) << r.out;
}
