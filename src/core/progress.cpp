#include "ocellus/core/progress.h"

#include <unistd.h>

namespace ocellus {

ProgressLine::ProgressLine(std::FILE* out, int tty, double every_s)
    : out_(out), tty_(tty < 0 ? ::isatty(::fileno(out)) != 0 : tty != 0), every_s_(every_s), last_(std::chrono::steady_clock::now()) {}

void ProgressLine::update(int64_t done, int64_t total, const std::string& text) {
  text_ = text;
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {  // in place; at most ~20 redraws a second
    if (open_ && done != total && std::chrono::duration<double>(now - last_).count() < 0.05) {
      dirty_ = true;
      return;
    }
    std::fprintf(out_, "\r%s   ", text.c_str());
    std::fflush(out_);
    last_ = now, open_ = true, dirty_ = false;
    return;
  }
  if (written_ && text == last_written_) {  // nothing new to say (e.g. a count rounded to MiB)
    dirty_ = false;
    return;
  }
  const int64_t decile = total > 0 ? done * 10 / total : -1;
  const bool due = !written_ || decile > last_decile_ || (total > 0 && done >= total) ||
                   std::chrono::duration<double>(now - last_).count() >= every_s_;
  if (!due) {
    dirty_ = true;
    return;
  }
  std::fprintf(out_, "%s\n", text.c_str());
  std::fflush(out_);
  last_ = now, last_decile_ = decile, dirty_ = false, written_ = true, last_written_ = text;
}

void ProgressLine::finish() {
  if (dirty_) {
    std::fprintf(out_, tty_ ? "\r%s   " : "%s\n", text_.c_str());
    dirty_ = false;
  }
  if (tty_ && open_) std::fprintf(out_, "\n");
  open_ = false;
  std::fflush(out_);
}

}  // namespace ocellus
