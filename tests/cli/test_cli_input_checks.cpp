// The command line against bad input: each case one clear error line naming the thing and the
// problem, the right exit status (1: an error, 2: a wrong option or value), and no work or
// allocation before the check.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "cliutil.h"

namespace ocellus {
namespace {

namespace fs = std::filesystem;
const std::string kFix = OCELLUS_FIXTURES;
const std::string kPeer = kFix + "/peer";
const std::string kPair = "-m " + kPeer + "/tiny-llama-f32.gguf --mmproj " + kPeer + "/tiny-mmproj-clip-f32.gguf";

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(CliInput, ThreadsFromTheEnvironmentAreChecked) {
  for (const char* bad : {"abc", "0", "-1", "2x", ""}) {
    const auto r = test::run_cli("info", std::string("OCELLUS_THREADS='") + bad + "'");
    EXPECT_EQ(r.status, 1) << bad;
    EXPECT_TRUE(has(r.err, std::string("ocellus: error: OCELLUS_THREADS='") + bad + "': expected a whole number of threads from 1 to 4096"))
        << r.err;
  }
  const auto many = test::run_cli("info", "OCELLUS_THREADS=4000");
  EXPECT_EQ(many.status, 0);
  EXPECT_TRUE(has(many.err, "ocellus: warning: OCELLUS_THREADS asks for 4000 threads on")) << many.err;
  EXPECT_NE(many.out.find("\nthreads      : 4000\n"), std::string::npos) << many.out;
  // -t before or after the verb.
  EXPECT_NE(test::run_cli("-t 3 info").out.find("\nthreads      : 3\n"), std::string::npos);
  EXPECT_NE(test::run_cli("info -t 3").out.find("\nthreads      : 3\n"), std::string::npos);
  // The setting is applied once for every verb, before it runs, also one that runs no kernel.
  const auto tok = test::run_cli("tokenize -m " + kFix + "/tokenizer/ggml-vocab-llama-spm.gguf --ids hi", "OCELLUS_THREADS=abc");
  EXPECT_EQ(tok.status, 1);
  EXPECT_TRUE(has(tok.err, "ocellus: error: OCELLUS_THREADS='abc'")) << tok.err;
}

// Every numeric option with a range refuses a value outside it, naming the option and the range.
TEST(CliInput, OutOfRangeValuesAreRefusedWithTheRange) {
  const std::string img = kFix + "/images/rocket.jpg";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"run " + kPair + " --image " + img + " -p hi -n -1", "--n-predict: Value -1 not in range 0 to"},
      {"run " + kPair + " --image " + img + " -p hi -c 0", "--ctx: Value 0 not in range 1 to"},
      {"run " + kPair + " --image " + img + " -p hi --temp -0.5", "--temp: Value -0.5 not in range 0"},
      {"chat " + kPair + " -n -5", "--n-predict: Value -5 not in range"},
      {"generate -m " + kPeer + "/tiny-llama-f32.gguf -p hi --temp -1", "--temp: Value -1 not in range"},
      {"generate -m " + kPeer + "/tiny-llama-f32.gguf -p hi --top-p 1.5", "--top-p: Value 1.5 not in range 0"},
      {"generate -m " + kPeer + "/tiny-llama-f32.gguf -p hi --repeat-penalty 0", "--repeat-penalty: Value 0 not in range"},
      {"generate -m " + kPeer + "/tiny-llama-f32.gguf -p hi --stop ''", "--stop: a stop string cannot be empty"},
      {"eval " + kPair + " --questions q.json --limit -1", "--limit: Value -1 not in range 0 to"},
      {"eval " + kPair + " --questions q.json --max-tokens 0", "--max-tokens: Value 0 not in range 1 to"},
      {"data fashion-vqa -o x --train-scenes -1", "--train-scenes: Value -1 not in range 1 to"},
      {"data fashion-vqa -o x --test-scenes -2", "--test-scenes: Value -2 not in range 0 to"},
      {"data fashion-vqa -o x --grid 4", "--grid: Value 4 not in range 2 to 3"},
      {"synth tiny-llama -o x.gguf --layers 0", "--layers: Value 0 not in range 1 to"},
      {"-t -1 info", "--threads: Value -1 not in range 0 to 4096"},
      {"cache --mmproj x --data d.json -o c.safetensors --batch 0", "--batch: Value 0 not in range 1 to"},
      {"train --recipe r.json --resume --overwrite", "--resume excludes --overwrite"},
  };
  for (const auto& [args, message] : cases) {
    const auto r = test::run_cli(args);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.err;
    EXPECT_TRUE(has(r.err, "ocellus: error: ")) << args << "\n" << r.err;
    EXPECT_TRUE(has(r.err, message)) << args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << args << "\n" << r.err;  // one line
  }
}

TEST(CliInput, DatasetsAndPrompts) {
  auto r = test::run_cli("data coco");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "ocellus: error: data: unknown dataset 'coco' (known: fashion-vqa)")) << r.err;
  r = test::run_cli("data fashion-vqa -o " + test::temp_path("fvqa") + " --source /nonexistent/fashion");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "/nonexistent/fashion is not a folder")) << r.err;
  EXPECT_TRUE(has(r.err, "apt-get install dataset-fashion-mnist")) << r.err;
  EXPECT_FALSE(fs::exists(test::temp_path("fvqa")));
  r = test::run_cli("generate -m " + kPeer + "/tiny-llama-f32.gguf -p ''");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "ocellus: error: the prompt (-p) is empty")) << r.err;
  r = test::run_cli("run " + kPair + " --image " + kFix + "/images/rocket.jpg -p '  '");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "the prompt (-p) is empty")) << r.err;
}

// Placeholders against images and the prompt against the context are checked before any image
// is encoded (the encoder prints "encoding N image(s)" when it starts).
TEST(CliInput, PromptCheckedBeforeImagesAreEncoded) {
  const std::string img = kFix + "/images/rocket.jpg";
  auto r = test::run_cli("run " + kPair + " --image " + img + " -p '<image> and <image>: which?'");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "the prompt has 2 <image> placeholder(s) for 1 image(s)")) << r.err;
  EXPECT_FALSE(has(r.err, "encoding")) << r.err;
  r = test::run_cli("run " + kPair + " --image " + img + " -p 'What is this?' -c 12");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "tokens but the context holds 12 (shorten it, or raise the context size with -c N)")) << r.err;
  EXPECT_FALSE(has(r.err, "encoding")) << r.err;
  r = test::run_cli("logits " + kPair + " --image " + img + " -p 'USER: no placeholder' -o " + test::temp_path("l.f32"));
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "the prompt has 0 <image> placeholder(s) for 1 image(s)")) << r.err;
  EXPECT_FALSE(has(r.err, "encoding")) << r.err;
  // With room in the context the same run answers.
  r = test::run_cli("run " + kPair + " --image " + img + " -p 'What is this?' -n 2 -c 64");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "decode: 2 tokens")) << r.err;
}

TEST(CliInput, InitChecksSizesFirstAndLeavesNothingBehind) {
  const std::string dir = test::temp_path("init_big");
  fs::remove_all(dir);
  const std::string tok = kFix + "/tokenizer/ggml-vocab-gpt-2.gguf";
  auto r = test::run_cli("init -o " + dir + " --tokenizer " + tok + " --n-embd 1000000");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "init: n_embd = 1000000 is more than 65536")) << r.err;
  // Within each bound but too large together: refused from the parameter count, before allocating.
  r = test::run_cli("init -o " + dir + " --tokenizer " + tok + " --n-embd 65536 --n-ff 262144 --n-head 64 --n-head-kv 64 --n-layer 64");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "more than half of this machine's memory")) << r.err;
  // A failure part-way (a --from folder that does not exist) leaves no folder either.
  r = test::run_cli("init -o " + dir + " --tokenizer " + tok + " --n-embd 32 --n-ff 64 --vision-embd 48 --vision-heads 3 --from /nonexistent");
  EXPECT_EQ(r.status, 1);
  const fs::path parent = fs::path(dir).parent_path();
  for (const auto& e : fs::directory_iterator(parent))
    EXPECT_NE(e.path().filename().string().rfind(fs::path(dir).filename().string(), 0), 0u) << "left behind: " << e.path();
  // A trailing slash names the same folder.
  r = test::run_cli("init -o " + dir + "/ --tokenizer " + tok + " --n-embd 32 --n-ff 64 --vision-embd 48 --vision-heads 3");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir + "/config.json"));
  fs::remove_all(dir);
  // A folder that holds something is not written into.
  fs::create_directories(dir);
  std::ofstream(dir + "/keep.txt") << "x";
  r = test::run_cli("init -o " + dir + " --tokenizer " + tok + " --n-embd 32 --n-ff 64 --vision-embd 48 --vision-heads 3");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, dir + " already exists and is not an empty folder")) << r.err;
  fs::remove_all(dir);
}

// An evaluation with stderr in a file writes progress lines, not carriage-return updates.
TEST(CliInput, ProgressInALogFileIsLines) {
  const auto r = test::run_cli("eval " + kPair + " --questions " OCELLUS_TESTS_DIR "/eval/eval_questions.json --images " + kFix +
                               "/images --max-tokens 2");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\r'), 0) << r.err;
  EXPECT_TRUE(has(r.err, "eval: 3/3 questions")) << r.err;
}

TEST(CliInput, CacheSkipBadLeavesOutMissingAndBrokenImages) {
  const std::string dir = test::temp_path("cache_skip");
  fs::remove_all(dir);
  fs::create_directories(dir + "/img");
  fs::copy_file(kFix + "/images/rocket.jpg", dir + "/img/good.jpg");
  fs::copy_file(kFix + "/images/truncated.jpg", dir + "/img/broken.jpg");
  std::ofstream(dir + "/data.json") << R"([
    {"id": "a", "image": "good.jpg", "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]},
    {"id": "b", "image": "broken.jpg", "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "b"}]},
    {"id": "c", "image": "missing.jpg", "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "c"}]}])";
  const std::string args = "cache --mmproj " + kPeer + "/tiny-mmproj-clip-f32.gguf --data " + dir + "/data.json --images " + dir +
                           "/img -o " + dir + "/features.safetensors";
  auto r = test::run_cli(args);
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "broken.jpg: ")) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/features.safetensors"));
  r = test::run_cli(args + " --skip-bad");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "cache: skipped " + dir + "/img/broken.jpg: ")) << r.err;
  EXPECT_TRUE(has(r.err, "missing.jpg")) << r.err;
  EXPECT_TRUE(has(r.err, "cache: skipped 2 missing or broken image(s)")) << r.err;
  EXPECT_TRUE(has(r.out, "1 distinct images")) << r.out;
  fs::remove_all(dir);
}

// The bundled model is found from a build folder anywhere (the source tree's path is compiled in)
// and from an installed copy.
TEST(CliInput, BundledModelFoundOutsideTheSourceTree) {
  const std::string src_models = fs::path(OCELLUS_TESTS_DIR).parent_path().string() + "/models/fashion-vlm";
  if (!fs::exists(src_models + "/model.gguf")) GTEST_SKIP() << "no bundled model in " << src_models;
  const std::string elsewhere = test::temp_path("elsewhere");
  fs::remove_all(elsewhere);
  fs::create_directories(elsewhere + "/bin");
  fs::copy_file(OCELLUS_CLI, elsewhere + "/bin/ocellus");
  const std::string exe = elsewhere + "/bin/ocellus";
  const int rc = std::system(("cd / && '" + exe + "' run --image " + src_models + "/example.png -p 'Describe the picture.' > '" +
                              elsewhere + "/out.txt' 2>/dev/null").c_str());
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(test::read_file(elsewhere + "/out.txt").rfind("a dress in the top left and a ", 0), 0u) << test::read_file(elsewhere + "/out.txt");
  // Installed: PREFIX/bin/ocellus finds PREFIX/share/ocellus/models first (the source tree's copy
  // comes later): with the installed model.gguf broken, that is the file it fails on.
  const std::string build_dir = fs::path(OCELLUS_CLI).parent_path().string();
  ASSERT_EQ(std::system(("cmake --install '" + build_dir + "' --prefix '" + elsewhere + "/prefix' > /dev/null").c_str()), 0);
  const std::string installed = elsewhere + "/prefix/share/ocellus/models/fashion-vlm/model.gguf";
  ASSERT_TRUE(fs::exists(installed));
  std::ofstream(installed, std::ios::trunc) << "not a model";
  EXPECT_NE(std::system(("cd / && '" + elsewhere + "/prefix/bin/ocellus' run --image " + src_models + "/example.png -p hi 2> '" +
                         elsewhere + "/err.txt' > /dev/null").c_str()), 0);
  EXPECT_TRUE(has(test::read_file(elsewhere + "/err.txt"), "gguf: " + installed + ": magic: not a GGUF file"))
      << test::read_file(elsewhere + "/err.txt");
  fs::remove_all(elsewhere);
}

}  // namespace
}  // namespace ocellus
