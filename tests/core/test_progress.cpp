// Progress off a terminal is a few lines, not one per update; on a terminal it is one line
// rewritten in place.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "ocellus/core/progress.h"
#include "testutil.h"

namespace ocellus {
namespace {

std::string written(bool tty, int64_t total, double every_s) {
  const std::string path = test::temp_path("progress.txt");
  std::FILE* f = std::fopen(path.c_str(), "w");
  {
    ProgressLine p(f, tty, every_s);
    for (int64_t i = 1; i <= total; ++i) p.update(i, total, "eval: " + std::to_string(i) + "/" + std::to_string(total));
  }
  std::fclose(f);
  const std::string s = test::read_file(path);
  std::remove(path.c_str());
  return s;
}

TEST(Progress, OffTerminalOneLinePerTenthAndTheLast) {
  // 5,959 updates (an evaluation of 5,959 questions) within a second: the first, one per 10%, the last.
  const std::string s = written(false, 5959, 3600);
  EXPECT_EQ(std::count(s.begin(), s.end(), '\r'), 0);
  const auto lines = std::count(s.begin(), s.end(), '\n');
  EXPECT_GE(lines, 10);
  EXPECT_LE(lines, 12) << s;
  EXPECT_NE(s.find("eval: 1/5959\n"), std::string::npos);
  EXPECT_NE(s.find("eval: 5959/5959\n"), std::string::npos);
  EXPECT_NE(s.find("eval: 596/5959\n"), std::string::npos);  // the first update past 10%
}

TEST(Progress, OffTerminalUnknownTotalWritesByTime) {
  const std::string path = test::temp_path("progress2.txt");
  std::FILE* f = std::fopen(path.c_str(), "w");
  {
    ProgressLine p(f, 0, 3600);
    for (int i = 1; i <= 1000; ++i) p.update(i, 0, "step " + std::to_string(i));
  }
  std::fclose(f);
  const std::string s = test::read_file(path);
  std::remove(path.c_str());
  EXPECT_EQ(s, "step 1\nstep 1000\n");  // the first, then the last at the end (finish)
}

TEST(Progress, OffTerminalSameTextIsNotRepeated) {
  const std::string path = test::temp_path("progress3.txt");
  std::FILE* f = std::fopen(path.c_str(), "w");
  {
    ProgressLine p(f, 0, 3600);
    p.update(1, 2, "half");
    p.update(2, 2, "all");
    p.update(2, 2, "all");  // more work reported at the same rounded state
  }
  std::fclose(f);
  const std::string s = test::read_file(path);
  std::remove(path.c_str());
  EXPECT_EQ(s, "half\nall\n");
}

TEST(Progress, TerminalRewritesOneLine) {
  const std::string s = written(true, 50, 5);
  EXPECT_GE(std::count(s.begin(), s.end(), '\r'), 2);
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 1);  // ended once
  EXPECT_NE(s.find("eval: 50/50"), std::string::npos);  // the last state is shown
}

}  // namespace
}  // namespace ocellus
