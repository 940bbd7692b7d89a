#pragma once
// Errors carry their context in the message ("gguf: tensor 'x' offset past end of file").
// Library code throws; the CLI and server catch at the boundary and print one clear line.
#include <sstream>
#include <stdexcept>
#include <string>

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
