#pragma once
// Progress of long work on stderr. On a terminal one line is rewritten in place; elsewhere (a log
// file, a pipe, CI) a new line is written only every 10% of the work or every few seconds, and
// at the end, so a log of a long run stays readable.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace ocellus {

class ProgressLine {
 public:
  // tty: whether the line is rewritten in place (default: whether `out` is a terminal);
  // every_s: seconds between lines off a terminal when 10% has not passed.
  explicit ProgressLine(std::FILE* out = stderr, int tty = -1, double every_s = 5.0);
  ~ProgressLine() { finish(); }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  // The state after `done` of `total` units (total <= 0: unknown); `text` describes it.
  void update(int64_t done, int64_t total, const std::string& text);
  // Ends the line on a terminal (called by the destructor too); off a terminal, writes the last
  // state if it was not written.
  void finish();

 private:
  std::FILE* out_;
  bool tty_;
  double every_s_;
  std::chrono::steady_clock::time_point last_;
  int64_t last_decile_ = -1;
  bool dirty_ = false, open_ = false;  // a state not yet written; a terminal line not yet ended
  bool written_ = false;              // off a terminal: a line written already
  std::string text_, last_written_;  // the latest state; the last line written off a terminal
};

}  // namespace ocellus
