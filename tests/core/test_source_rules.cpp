// Rules about the source that make a class of bug impossible to add again unnoticed: JSON a
// person writes is parsed only through io::parse_json (so its errors name file, line and
// column), and progress is drawn with "\r" only by ProgressLine (so it stays readable in a log).
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <regex>
#include <set>

#include "testutil.h"

namespace ocellus {
namespace {

namespace fs = std::filesystem;

// Each source file under src/ whose text matches `re`, with the count of matches.
std::map<std::string, int> files_matching(const std::regex& re) {
  const fs::path src = fs::path(OCELLUS_TESTS_DIR).parent_path() / "src";
  std::map<std::string, int> out;
  for (const auto& e : fs::recursive_directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    const std::string text = test::read_file(e.path().string());
    const int n = int(std::distance(std::sregex_iterator(text.begin(), text.end(), re), std::sregex_iterator()));
    if (n > 0) out[fs::relative(e.path(), src).string()] = n;
  }
  return out;
}

TEST(SourceRules, JsonIsParsedThroughOneFunction) {
  const auto found = files_matching(std::regex(R"(json::parse\()"));
  // The exceptions, each with why: the parser itself; the metrics log, read line by line, where a
  // line cut by a kill is skipped on purpose (train::read_metrics_log, its one reader).
  const std::map<std::string, int> allowed = {{"io/json.cpp", 1}, {"train/trainer.cpp", 1}};
  EXPECT_EQ(found, allowed);
}

TEST(SourceRules, OnlyProgressLineRewritesALine) {
  const auto found = files_matching(std::regex(R"(printf\([^;]*"\\r)"));
  EXPECT_EQ(found, (std::map<std::string, int>{{"core/progress.cpp", 2}}));
}

}  // namespace
}  // namespace ocellus
