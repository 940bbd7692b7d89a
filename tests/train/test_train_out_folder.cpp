// A training run and its output folder: a fresh run never replaces an earlier run's files, a
// resume past the recipe's end says so, and counts in a recipe are whole numbers.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ocellus/core/error.h"
#include "ocellus/train/trainer.h"
#include "testutil.h"

namespace ocellus {
namespace {

namespace fs = std::filesystem;

using test::error_of;

TEST(TrainOutFolder, FreshRunRefusesAFolderHoldingARun) {
  const std::string out = test::temp_path("out_folder");
  fs::remove_all(out);
  train::Recipe r;
  r.path = "r.json", r.out = out, r.steps = 10;
  EXPECT_EQ(train::prepare_out_folder(r, train::Start::Fresh), 0);  // no folder yet
  fs::create_directories(out + "/model");
  std::ofstream(out + "/metrics.jsonl") << "{\"step\": 1}\n";
  std::ofstream(out + "/notes.txt") << "mine";  // not a run's file: never touched
  const std::string e = error_of([&] { train::prepare_out_folder(r, train::Start::Fresh); });
  EXPECT_NE(e.find(out + " already holds a run (metrics.jsonl, model)"), std::string::npos) << e;
  EXPECT_NE(e.find("--resume"), std::string::npos);
  EXPECT_NE(e.find("--overwrite"), std::string::npos);
  EXPECT_TRUE(fs::exists(out + "/metrics.jsonl"));  // refused: nothing removed
  // --overwrite removes the run's files and only those.
  EXPECT_EQ(train::prepare_out_folder(r, train::Start::Overwrite), 0);
  EXPECT_FALSE(fs::exists(out + "/metrics.jsonl"));
  EXPECT_FALSE(fs::exists(out + "/model"));
  EXPECT_TRUE(fs::exists(out + "/notes.txt"));
  fs::remove_all(out);
}

TEST(TrainOutFolder, ResumeChecksTheCheckpointAgainstSteps) {
  const std::string out = test::temp_path("out_resume");
  fs::remove_all(out);
  train::Recipe r;
  r.path = "r.json", r.out = out, r.steps = 10;
  EXPECT_NE(error_of([&] { train::prepare_out_folder(r, train::Start::Resume); }).find("no checkpoint in"), std::string::npos);
  fs::create_directories(out + "/checkpoints/step-00000012");
  std::ofstream(out + "/checkpoints/step-00000012/trainer.json") << "{\"step\": 12}";
  std::ofstream(out + "/checkpoints/latest") << "step-00000012";
  const std::string e = error_of([&] { train::prepare_out_folder(r, train::Start::Resume); });
  EXPECT_NE(e.find("the checkpoint is at step 12, past the recipe's 'steps' = 10"), std::string::npos) << e;
  r.steps = 12;  // at the last step: nothing to train, the export runs
  EXPECT_EQ(train::prepare_out_folder(r, train::Start::Resume), 12);
  r.steps = 20;
  EXPECT_EQ(train::prepare_out_folder(r, train::Start::Resume), 12);
  fs::remove_all(out);
}

TEST(TrainOutFolder, CountsAreWholeNumbers) {
  const std::string base = R"({"base": "b", "data": "d.json", "out": "o", )";
  for (const char* key : {"steps", "batch", "max_len", "warmup", "checkpoint_every", "keep", "micro_batch_tokens"}) {
    const std::string e = error_of([&] { train::parse_recipe(base + "\"" + key + "\": 2.5}", "r.json"); });
    EXPECT_NE(e.find(std::string("r.json: '") + key + "' = 2.5 must be a whole number"), std::string::npos) << key << ": " << e;
  }
  EXPECT_EQ(train::parse_recipe(base + R"("steps": 3})", "r.json").steps, 3);
  // A parameter group's values are checked, not silently replaced by the defaults.
  EXPECT_NE(error_of([&] { train::parse_recipe(base + R"("groups": [{"prefix": "a", "lr": "1e-3"}]})", "r.json"); })
                .find("group 'a': 'lr' must be a number"),
            std::string::npos);
  EXPECT_NE(error_of([&] { train::parse_recipe(base + R"("groups": [{"prefix": "a", "rate": 1}]})", "r.json"); })
                .find("group 'a': unknown key 'rate'"),
            std::string::npos);
}

}  // namespace
}  // namespace ocellus
