#include "ocellus/io/json.h"

#include "ocellus/core/error.h"
#include "ocellus/io/file.h"

namespace ocellus::io {

nlohmann::json parse_json(const std::string& text, const std::string& name, const char* what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // Line and column of the byte the parser stopped at (1-based; e.byte counts from 1).
    const size_t at = std::min(text.size(), e.byte > 0 ? size_t(e.byte - 1) : size_t(0));
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at; ++i) {
      if (text[i] == '\n') ++line, col = 1;
      else ++col;
    }
    // nlohmann's message is "[json.exception.parse_error.101] parse error at line L, column C: why"
    const std::string msg = e.what();
    const size_t colon = msg.find(": ", msg.find("parse error"));
    fail(what, ": ", name, ": invalid JSON at line ", line, ", column ", col, ": ",
         colon == std::string::npos ? msg : msg.substr(colon + 2));
  } catch (const nlohmann::json::exception& e) {
    // The parser's other errors carry no position: a number too large for a double ("1e400",
    // out_of_range 406), invalid UTF-8 in a string. "[json.exception.x.n] " is not for users.
    const std::string msg = e.what();
    const size_t tag = msg.find("] ");
    fail(what, ": ", name, ": invalid JSON: ", tag == std::string::npos ? msg : msg.substr(tag + 2));
  }
}

nlohmann::json read_json_file(const std::string& path, const char* what, size_t max_bytes) {
  return parse_json(read_text_file(path, max_bytes), path, what);
}

}  // namespace ocellus::io
