#include "ocellus/io/json.h"
#include "ocellus/data/llava_json.h"

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/io/file.h"

namespace ocellus::data {

namespace {

using nlohmann::json;

// One record, or an error message saying what is wrong with it.
Record parse_record(const json& j, std::string* why) {
  Record r;
  auto bad = [&](const std::string& w) {
    *why = w;
    return Record{};
  };
  if (!j.is_object()) return bad("not an object");
  if (j.contains("id")) {
    if (j["id"].is_string()) r.id = j["id"].get<std::string>();
    else if (j["id"].is_number_integer()) r.id = std::to_string(j["id"].get<int64_t>());
    else return bad("'id' is neither a string nor an integer");
  }
  if (j.contains("image") && !j["image"].is_null()) {
    if (!j["image"].is_string()) return bad("'image' is not a string");
    r.image = j["image"].get<std::string>();
  }
  if (!j.contains("conversations") || !j["conversations"].is_array()) return bad("no 'conversations' array");
  for (size_t t = 0; t < j["conversations"].size(); ++t) {
    const json& m = j["conversations"][t];
    const std::string at = "conversations[" + std::to_string(t) + "]";
    if (!m.is_object() || !m.contains("from") || !m["from"].is_string() || !m.contains("value") || !m["value"].is_string())
      return bad(at + " needs string 'from' and 'value'");
    const std::string from = m["from"].get<std::string>();
    std::string role;
    if (from == "human" || from == "user") role = "user";
    else if (from == "gpt" || from == "assistant") role = "assistant";
    else if (from == "system") role = "system";
    else return bad(at + ": unknown speaker '" + from + "' (human, gpt, system)");
    r.messages.push_back({role, m["value"].get<std::string>()});
  }
  size_t markers = 0, replies = 0;
  for (const text::Message& m : r.messages) {
    for (size_t p = 0; (p = m.content.find("<image>", p)) != std::string::npos; p += 7) ++markers;
    replies += m.role == "assistant";
  }
  if (replies == 0) return bad("no reply from 'gpt' to learn from");
  if (r.image.empty() && markers > 0) return bad("an <image> placeholder but no 'image'");
  if (!r.image.empty() && markers == 0) r.messages[r.messages[0].role == "system" ? 1 : 0].content.insert(0, "<image>\n");
  if (!r.image.empty() && markers > 1) return bad("more than one <image> placeholder for one image");
  return r;
}

}  // namespace

std::vector<Record> parse_llava_json(const std::string& text, const std::string& name, OnBad on_bad,
                                     std::vector<std::string>* skipped) {
  const json j = io::parse_json(text, name, "data");
  OCELLUS_CHECK(j.is_array(), "data: ", name, ": expected a JSON array of records");
  std::vector<Record> out;
  for (size_t i = 0; i < j.size(); ++i) {
    std::string why;
    Record r = parse_record(j[i], &why);
    if (!why.empty()) {
      const std::string msg = "record " + std::to_string(i) + ": " + why;
      if (on_bad == OnBad::Fail) fail("data: ", name, ": ", msg, " (to skip malformed records: \"skip_bad_records\": true in a recipe, --skip-bad for ocellus cache)");
      if (skipped) skipped->push_back(msg);
      continue;
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<Record> read_llava_json(const std::string& path, OnBad on_bad, std::vector<std::string>* skipped) {
  return parse_llava_json(io::read_text_file(path, size_t(4) << 30), path, on_bad, skipped);
}

Encoded encode_record(const Record& r, const text::Tokenizer& tok, text::ChatTemplate t, int64_t n_image_tokens,
                      int64_t max_len) {
  OCELLUS_CHECK(max_len > 0, "data: max_len must be > 0");
  const text::EncodedChat e = text::encode_chat_with_images(tok, t, r.messages, n_image_tokens);
  Encoded out;
  out.ids = e.ids, out.mask = e.mask;
  out.has_image = !r.image.empty();
  if (int64_t(out.ids.size()) > max_len) {
    out.truncated = true;
    size_t cut = size_t(max_len), rows = 0;
    for (size_t i = 0; i < cut; ++i) rows += out.ids[i] < 0;
    if (rows != 0 && int64_t(rows) != n_image_tokens)  // the cut falls inside the image: end before it
      for (cut = 0; out.ids[cut] >= 0; ++cut) {}
    out.ids.resize(cut), out.mask.resize(cut);
    out.has_image = out.has_image && int64_t(rows) == n_image_tokens;
  }
  return out;
}

}  // namespace ocellus::data
