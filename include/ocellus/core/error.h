#pragma once
// Errors carry their context in the message ("gguf: tensor 'x' offset past end of file").
// Library code throws; the CLI and server catch at the boundary and print one clear line.
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ocellus {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

// "a, b, c": the names an error lists (the known ones, the ones found).
inline std::string join(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string s;
  for (const std::string& x : items) s += (s.empty() ? "" : sep) + x;
  return s;
}

// Throws ocellus::Error with the pieces streamed together.
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(detail::concat(args...));
}

}  // namespace ocellus

#define OCELLUS_CHECK(cond, ...)                    \
  do {                                              \
    if (!(cond)) ::ocellus::fail(__VA_ARGS__);      \
  } while (0)
