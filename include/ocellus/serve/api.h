#pragma once
// The OpenAI-shaped requests `ocellus serve` answers, parsed and checked before any work:
// /v1/chat/completions (messages with string or content-part content, images as data: URIs or,
// under --media-path, local files), /v1/completions and /v1/embeddings. Every problem is an
// ApiError carrying the HTTP status and OpenAI's error fields; nothing is fetched from the
// network. Parsing only reads the body: images are decoded later, by the engine.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ocellus/text/chat.h"

namespace ocellus::serve {

// {"error": {"message", "type", "param", "code"}} with the HTTP status it goes out with.
struct ApiError : std::runtime_error {
  int status;
  std::string type, param, code;
  ApiError(int status, const std::string& message, std::string param = "", std::string type = "invalid_request_error",
           std::string code = "");
  std::string json() const;
};

struct ApiLimits {
  size_t max_image_bytes = 20u << 20;  // one image, encoded
  size_t max_images = 16;              // per request
  std::string media_path;              // local images allowed under it (empty: none)
};

// The sampling and stopping options both completion endpoints take.
struct SamplingRequest {
  int32_t max_tokens = -1;  // -1: until the end of the context
  float temperature = 1.0f, top_p = 1.0f;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool stream = false, include_usage = false;
};

struct ChatRequest {
  std::string model;
  std::vector<text::Message> messages;  // an "<image>\n" placeholder where each image was
  std::vector<std::string> images;      // the images' encoded bytes (PNG / JPEG), in order
  SamplingRequest sampling;
};

struct CompletionRequest {
  std::string model, prompt;
  SamplingRequest sampling;
};

// /v1/embeddings: text inputs (the text model's last hidden state, mean-pooled), or, as an
// ocellus extension, images ({"type": "image_url", ...} items): the connector's output rows,
// mean-pooled ("pooling": "mean", the default) or one vector per image token ("none").
struct EmbeddingRequest {
  std::string model;
  std::vector<std::string> texts;
  std::vector<std::string> images;  // encoded bytes
  bool per_token = false;
};

ChatRequest parse_chat_request(const std::string& body, const ApiLimits& limits);
CompletionRequest parse_completion_request(const std::string& body);
EmbeddingRequest parse_embedding_request(const std::string& body, const ApiLimits& limits);

// Strict base64 (RFC 4648, padding optional): an error on any other character.
std::string base64_decode(const std::string& s);

}  // namespace ocellus::serve
