#include "ocellus/serve/api.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/io/json.h"
#include "ocellus/model/answer.h"

namespace ocellus::serve {

using nlohmann::json;
namespace fs = std::filesystem;

ApiError::ApiError(int s, const std::string& message, std::string p, std::string t, std::string c)
    : std::runtime_error(message), status(s), type(std::move(t)), param(std::move(p)), code(std::move(c)) {}

std::string ApiError::json() const {
  nlohmann::json e = {{"message", what()}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = param;
  if (!code.empty()) e["code"] = code;
  // Messages quote the request (a role, a type, the bytes a JSON error stopped at), which may
  // not be UTF-8: such bytes go out as U+FFFD.
  return nlohmann::json{{"error", e}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string base64_decode(const std::string& s) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;  // '-' and '_': the URL-safe alphabet
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  size_t n = s.size();
  while (n > 0 && s[n - 1] == '=') --n;
  if (s.size() - n > 2 || n % 4 == 1) throw ApiError(400, "invalid base64: bad length or padding");
  std::string out;
  out.reserve(n / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; ++i) {
    const int v = value(s[i]);
    if (v < 0) throw ApiError(400, "invalid base64: character " + std::to_string(i) + " is not in the base64 alphabet");
    acc = (acc << 6) | uint32_t(v), bits += 6;
    if (bits >= 8) bits -= 8, out.push_back(char((acc >> bits) & 0xff));
  }
  return out;
}

namespace {

json parse_body(const std::string& body) {
  json j;
  try {
    j = io::parse_json(body, "the request body", "malformed JSON");  // a syntax error (line, column), a number out of range
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
  if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object");
  return j;
}

// A field of the wrong JSON type: one message naming it and the type it needs.
[[noreturn]] void wrong_type(const std::string& name, const char* want) {
  throw ApiError(400, "'" + name + "' must be " + want, name);
}

// The bytes of an image_url: a data: URI (base64 PNG or JPEG) or, under the media path, a local file.
std::string image_bytes(const std::string& url, const std::string& where, const ApiLimits& limits) {
  if (url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0)
    throw ApiError(400, "'" + where + "': remote image URLs are not fetched by this server; send the image inline as a data: URI (base64)",
                   where);
  if (url.rfind("data:", 0) == 0) {
    const size_t comma = url.find(',');
    if (comma == std::string::npos) throw ApiError(400, "'" + where + "': a data: URI without a comma", where);
    const std::string meta = url.substr(5, comma - 5);
    if (meta.size() < 7 || meta.compare(meta.size() - 7, 7, ";base64") != 0)
      throw ApiError(400, "'" + where + "': only base64 data: URIs are accepted", where);
    if ((comma + 1 < url.size() ? url.size() - comma - 1 : 0) / 4 * 3 > limits.max_image_bytes + 3)
      throw ApiError(413, "'" + where + "': the image is over " + std::to_string(limits.max_image_bytes >> 20) + " MiB", where);
    try {
      return base64_decode(url.substr(comma + 1));
    } catch (const ApiError& e) {
      throw ApiError(400, "'" + where + "': " + e.what(), where);
    }
  }
  std::string path = url.rfind("file://", 0) == 0 ? url.substr(7) : url;
  if (limits.media_path.empty())
    throw ApiError(400, "'" + where + "': not a data: URI; local files are served only under --media-path", where);
  std::error_code ec;
  const fs::path root = fs::weakly_canonical(limits.media_path, ec);
  const fs::path file = fs::weakly_canonical(fs::path(path).is_relative() ? root / path : fs::path(path), ec);
  const std::string r = root.string(), f = file.string();
  if (ec || f.compare(0, r.size(), r) != 0 || (f.size() > r.size() && f[r.size()] != '/'))
    throw ApiError(400, "'" + where + "': " + path + " is not under the media path", where);
  if (!fs::is_regular_file(file, ec)) throw ApiError(400, "'" + where + "': no file " + path + " under the media path", where);
  if (fs::file_size(file, ec) > limits.max_image_bytes)
    throw ApiError(413, "'" + where + "': the image is over " + std::to_string(limits.max_image_bytes >> 20) + " MiB", where);
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// {"type": "image_url", "image_url": {"url": ...}} (or "image_url": "..."): the image's bytes.
std::string image_part(const json& part, const std::string& where, const ApiLimits& limits) {
  const json* u = part.contains("image_url") ? &part["image_url"] : nullptr;
  if (!u) throw ApiError(400, "'" + where + "': an image_url part needs 'image_url'", where);
  std::string url;
  if (u->is_string()) url = u->get<std::string>();
  else if (u->is_object() && u->contains("url") && (*u)["url"].is_string()) url = (*u)["url"].get<std::string>();
  else wrong_type(where + ".image_url", "an object with a string 'url'");
  return image_bytes(url, where + ".image_url.url", limits);
}

SamplingRequest parse_sampling(const json& j) {
  SamplingRequest s;
  auto number = [&](const char* k, double lo, double hi, float& out) {
    if (!j.contains(k) || j[k].is_null()) return;
    if (!j[k].is_number()) wrong_type(k, "a number");
    const double v = j[k].get<double>();
    if (v < lo || v > hi) throw ApiError(400, std::string("'") + k + "' = " + std::to_string(v) + " is outside [" +
                                               std::to_string(lo) + ", " + std::to_string(hi) + "]", k);
    out = float(v);
  };
  number("temperature", 0, 2, s.temperature);
  number("top_p", 0, 1, s.top_p);
  for (const char* k : {"max_tokens", "max_completion_tokens"})
    if (j.contains(k) && !j[k].is_null()) {
      if (!j[k].is_number_integer()) wrong_type(k, "an integer");
      const int64_t v = j[k].get<int64_t>();
      if (v < 1 || v > (int64_t(1) << 30)) throw ApiError(400, std::string("'") + k + "' must be at least 1", k);
      s.max_tokens = int32_t(v);
    }
  if (j.contains("seed") && !j["seed"].is_null()) {
    if (!j["seed"].is_number_integer()) wrong_type("seed", "an integer");
    s.seed = j["seed"].is_number_unsigned() ? j["seed"].get<uint64_t>() : uint64_t(j["seed"].get<int64_t>());
  }
  if (j.contains("stop") && !j["stop"].is_null()) {
    const json& st = j["stop"];
    if (st.is_string()) s.stop.push_back(st.get<std::string>());
    else if (st.is_array() && st.size() <= 4) {
      for (const json& e : st) {
        if (!e.is_string()) wrong_type("stop", "a string or a list of at most 4 strings");
        s.stop.push_back(e.get<std::string>());
      }
    } else wrong_type("stop", "a string or a list of at most 4 strings");
  }
  if (j.contains("stream") && !j["stream"].is_null()) {
    if (!j["stream"].is_boolean()) wrong_type("stream", "true or false");
    s.stream = j["stream"].get<bool>();
  }
  if (j.contains("stream_options") && j["stream_options"].is_object() && j["stream_options"].contains("include_usage")) {
    if (!j["stream_options"]["include_usage"].is_boolean()) wrong_type("stream_options.include_usage", "true or false");
    s.include_usage = j["stream_options"]["include_usage"].get<bool>();
  }
  if (j.contains("n") && !j["n"].is_null() && !(j["n"].is_number_integer() && j["n"].get<int64_t>() == 1))
    throw ApiError(400, "'n': only one choice per request is supported", "n");
  return s;
}

std::string model_name(const json& j) {
  if (!j.contains("model") || j["model"].is_null()) return "";
  if (!j["model"].is_string()) wrong_type("model", "a string");
  return j["model"].get<std::string>();
}

}  // namespace

ChatRequest parse_chat_request(const std::string& body, const ApiLimits& limits) {
  const json j = parse_body(body);
  ChatRequest r;
  r.model = model_name(j);
  if (!j.contains("messages")) throw ApiError(400, "'messages' is required", "messages");
  if (!j["messages"].is_array() || j["messages"].empty()) wrong_type("messages", "a non-empty list of messages");
  for (size_t i = 0; i < j["messages"].size(); ++i) {
    const json& m = j["messages"][i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) wrong_type(where, "an object with 'role' and 'content'");
    if (!m.contains("role") || !m["role"].is_string()) wrong_type(where + ".role", "a string");
    std::string role = m["role"].get<std::string>();
    if (role == "developer") role = "system";  // OpenAI's newer name for the system message
    if (role != "system" && role != "user" && role != "assistant")
      throw ApiError(400, "'" + where + ".role' must be system, developer, user or assistant, not '" + role + "'", where + ".role");
    text::Message out{role, ""};
    const json c = m.contains("content") ? m["content"] : json();
    if (c.is_string()) out.content = c.get<std::string>();
    else if (c.is_array()) {
      for (size_t k = 0; k < c.size(); ++k) {
        const json& part = c[k];
        const std::string pw = where + ".content[" + std::to_string(k) + "]";
        if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
          wrong_type(pw, "an object with a string 'type'");
        const std::string type = part["type"].get<std::string>();
        if (type == "text") {
          if (!part.contains("text") || !part["text"].is_string()) wrong_type(pw + ".text", "a string");
          out.content += part["text"].get<std::string>();
        } else if (type == "image_url") {
          if (role != "user") throw ApiError(400, "'" + pw + "': images belong in user messages", pw);
          if (r.images.size() >= limits.max_images)
            throw ApiError(400, "more than " + std::to_string(limits.max_images) + " images in one request", pw);
          r.images.push_back(image_part(part, pw, limits));
          out.content += model::image_placeholders(1);
        } else {
          throw ApiError(400, "'" + pw + ".type' must be \"text\" or \"image_url\", not '" + type + "'", pw + ".type");
        }
      }
    } else if (!(c.is_null() && role == "assistant")) {
      wrong_type(where + ".content", "a string or a list of content parts");
    }
    r.messages.push_back(std::move(out));
  }
  r.sampling = parse_sampling(j);
  return r;
}

CompletionRequest parse_completion_request(const std::string& body) {
  const json j = parse_body(body);
  CompletionRequest r;
  r.model = model_name(j);
  if (!j.contains("prompt")) throw ApiError(400, "'prompt' is required", "prompt");
  if (!j["prompt"].is_string()) wrong_type("prompt", "a string");
  r.prompt = j["prompt"].get<std::string>();
  if (r.prompt.empty()) throw ApiError(400, "'prompt' is empty", "prompt");
  r.sampling = parse_sampling(j);
  if (!j.contains("max_tokens")) r.sampling.max_tokens = 16;  // OpenAI's default for completions
  return r;
}

EmbeddingRequest parse_embedding_request(const std::string& body, const ApiLimits& limits) {
  const json j = parse_body(body);
  EmbeddingRequest r;
  r.model = model_name(j);
  if (!j.contains("input")) throw ApiError(400, "'input' is required", "input");
  const json in = j["input"].is_array() ? j["input"] : json::array({j["input"]});
  if (in.empty()) throw ApiError(400, "'input' is empty", "input");
  for (size_t i = 0; i < in.size(); ++i) {
    const std::string where = "input[" + std::to_string(i) + "]";
    if (in[i].is_string()) {
      if (in[i].get<std::string>().empty()) throw ApiError(400, "'" + where + "' is empty", where);
      r.texts.push_back(in[i].get<std::string>());
    } else if (in[i].is_object() && in[i].value("type", "") == "image_url") {
      if (r.images.size() >= limits.max_images)
        throw ApiError(400, "more than " + std::to_string(limits.max_images) + " images in one request", where);
      r.images.push_back(image_part(in[i], where, limits));
    } else {
      wrong_type(where, "a string or an {\"type\": \"image_url\", \"image_url\": {\"url\": ...}} object");
    }
  }
  if (!r.texts.empty() && !r.images.empty())
    throw ApiError(400, "'input' mixes text and images: send them in separate requests", "input");
  if (j.contains("pooling")) {
    if (j["pooling"] != "mean" && j["pooling"] != "none") throw ApiError(400, "'pooling' must be \"mean\" or \"none\"", "pooling");
    r.per_token = j["pooling"] == "none";
  }
  if (j.contains("encoding_format") && j["encoding_format"] != "float")
    throw ApiError(400, "'encoding_format': only \"float\" is supported", "encoding_format");
  return r;
}

}  // namespace ocellus::serve
