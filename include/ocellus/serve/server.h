#pragma once
// `ocellus serve`: an OpenAI-compatible HTTP server over an Engine (cpp-httplib for HTTP,
// nlohmann-json for bodies). POST /v1/chat/completions, /v1/completions (both streaming as
// server-sent events on request), /v1/embeddings (text, and images as an ocellus extension);
// GET /v1/models, /health, /metrics (Prometheus text) and / (the chat page). Errors go out in
// OpenAI's shape with their status; one log line per request on stderr.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "ocellus/serve/api.h"
#include "ocellus/serve/engine.h"

namespace httplib {
class Server;
}

namespace ocellus::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: any free port (bind() says which)
  std::string model_name = "ocellus";
  size_t max_body = 64u << 20;     // bytes; a larger body is refused (413)
  ApiLimits limits;
  bool log = true;                 // a line per request on stderr
};

class Server {
 public:
  Server(Engine& engine, ServerOptions options);
  ~Server();
  // Binds the address; returns the port. Throws an Error naming the address when it is taken.
  int bind();
  // Serves until stop() (from any thread, e.g. a signal watcher).
  void run();
  void stop();

 private:
  void routes();
  Engine& engine_;
  ServerOptions o_;
  std::unique_ptr<httplib::Server> http_;
  std::mutex embed_mu_;  // embeddings run one at a time, beside the engine's decoding
  std::atomic<uint64_t> next_id_{1};
  std::atomic<uint64_t> http_requests_{0};
  int64_t started_ = 0;   // unix time
};

}  // namespace ocellus::serve
