#pragma once
// JSON text from a file people write by hand (recipes, data, evaluation files, config.json,
// tokenizer.json ...): one parser for all of them, so every syntax error says where it is.
#include <nlohmann/json.hpp>

#include <string>

namespace ocellus::io {

// Parses `text`, read from `name`; a syntax error throws an Error
// "<what>: <name>: invalid JSON at line L, column C: <reason>".
nlohmann::json parse_json(const std::string& text, const std::string& name, const char* what);

// The same for a whole file (read with read_text_file's size limit).
nlohmann::json read_json_file(const std::string& path, const char* what, size_t max_bytes = size_t(256) << 20);

}  // namespace ocellus::io
