#include "ocellus/serve/server.h"

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <future>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/io/image.h"
#include "ocellus/ops/elementwise.h"
#include "web_page.h"

namespace ocellus::serve {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

int64_t unix_now() { return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count(); }

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(e.json(), "application/json");
}

const char* finish_reason(const std::string& stop_reason) {
  return stop_reason == "eos" || stop_reason == "stop string" ? "stop" : "length";
}

json usage_of(const lm::GenerateResult& r, int64_t cached) {
  json u = {{"prompt_tokens", r.n_prompt}, {"completion_tokens", r.tokens.size()}, {"total_tokens", r.n_prompt + int64_t(r.tokens.size())}};
  u["prompt_tokens_details"] = {{"cached_tokens", cached}};
  return u;
}

// llama-server's "timings" object (an extension of OpenAI's shape), with the time to the first
// token: prompt positions computed and reused, and the milliseconds of each part.
json timings_of(const lm::GenerateResult& r, const Job& job) {
  return {{"prompt_n", r.n_prompt - job.n_cached}, {"cache_n", job.n_cached}, {"prompt_ms", job.prefill_seconds * 1e3},
          {"first_token_ms", job.first_token_seconds * 1e3}, {"predicted_n", r.tokens.size()}, {"predicted_ms", r.decode_seconds * 1e3}};
}

// What a streamed request's HTTP thread waits on: the pieces the engine produced, then the end.
struct StreamState {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> pieces;
  bool done = false;
  int status = 200;
  std::string error;
  lm::GenerateResult result;
  std::atomic<bool> gone{false};  // the client closed the connection
};

lm::GenerateParams generation_of(const SamplingRequest& s) {
  lm::GenerateParams g;
  g.n_predict = s.max_tokens;
  g.stop = s.stop;
  g.sampling.temperature = s.temperature;
  g.sampling.top_p = s.top_p;
  g.sampling.top_k = 0, g.sampling.min_p = 0;  // OpenAI's sampling: temperature and top_p only
  g.sampling.seed = s.seed ? *s.seed : uint64_t(std::random_device{}()) << 32 ^ std::random_device{}();
  return g;
}

}  // namespace

Server::Server(Engine& engine, ServerOptions options) : engine_(engine), o_(std::move(options)), http_(std::make_unique<httplib::Server>()) {
  started_ = unix_now();
  // Every streamed request holds a thread while it runs: enough for the slots, the queue and
  // the quick requests beside them.
  const size_t threads = size_t(engine_.stats().slots) + 64 + 8;
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_->set_payload_max_length(o_.max_body);
  http_->set_read_timeout(30, 0);
  http_->set_write_timeout(30, 0);
  routes();
}

Server::~Server() { stop(); }

int Server::bind() {
  const bool ok = o_.port == 0 ? (o_.port = http_->bind_to_any_port(o_.host)) > 0 : http_->bind_to_port(o_.host, o_.port);
  OCELLUS_CHECK(ok, "serve: cannot listen on ", o_.host, ":", o_.port, " (in use, or not an address of this machine)");
  return o_.port;
}

void Server::run() { http_->listen_after_bind(); }

void Server::stop() {
  if (http_) http_->stop();
}

void Server::routes() {
  httplib::Server& s = *http_;
  // Errors httplib raises itself (a body over the limit, an unknown path) in OpenAI's shape.
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413) send_error(res, ApiError(413, "the request body is over the size limit"));
    else if (res.status == 404) send_error(res, ApiError(404, "no route " + req.method + " " + req.path, "", "not_found_error"));
    else send_error(res, ApiError(res.status, "HTTP status " + std::to_string(res.status), "", "invalid_request_error"));
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    try {
      std::rethrow_exception(ep);
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const Error& e) {
      send_error(res, ApiError(400, e.what()));
    } catch (const std::exception& e) {
      send_error(res, ApiError(500, e.what(), "", "server_error"));
    }
  });
  // A request is handled start to end on one of the pool's threads (a streamed body too), so
  // its start time can wait in a thread-local until the logger runs.
  static thread_local Clock::time_point request_start;
  s.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    request_start = Clock::now();
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    ++http_requests_;
    // A completion that ran logs its own line, with its tokens, when the engine finishes it.
    if (!o_.log || (req.method == "POST" && req.path.find("completions") != std::string::npos && res.status == 200)) return;
    std::fprintf(stderr, "%s %s %d %.1f ms\n", req.method.c_str(), req.path.c_str(), res.status,
                 std::chrono::duration<double, std::milli>(Clock::now() - request_start).count());
  });

  s.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.set_content(R"({"status":"ok"})", "application/json"); });
  s.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content(kWebPage, "text/html; charset=utf-8"); });
  s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    const json m = {{"id", o_.model_name}, {"object", "model"}, {"created", started_}, {"owned_by", "ocellus"},
                    {"meta", {{"n_ctx", engine_.context_size()}, {"vision", engine_.vlm().vision != nullptr}}}};
    res.set_content(json{{"object", "list"}, {"data", json::array({m})}}.dump(), "application/json");
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    const EngineStats st = engine_.stats();
    std::string out;
    auto metric = [&](const char* name, const char* type, const char* help, double v) {
      out += std::string("# HELP ocellus_") + name + " " + help + "\n# TYPE ocellus_" + name + " " + type + "\nocellus_" + name + " " +
             std::to_string(v) + "\n";
    };
    metric("requests_total", "counter", "Completion requests finished.", double(st.requests));
    metric("request_errors_total", "counter", "Completion requests that ended in an error.", double(st.errors));
    metric("http_requests_total", "counter", "HTTP requests answered.", double(http_requests_.load()));
    metric("prompt_tokens_total", "counter", "Prompt positions computed.", double(st.prompt_tokens));
    metric("prompt_tokens_cached_total", "counter", "Prompt positions reused from a slot's cache.", double(st.cached_tokens));
    metric("tokens_generated_total", "counter", "Tokens generated.", double(st.generated_tokens));
    metric("images_encoded_total", "counter", "Images run through the vision model.", double(st.images_encoded));
    metric("images_reused_total", "counter", "Images taken from the image cache.", double(st.images_reused));
    metric("prompt_tokens_per_second", "gauge", "Prompt positions per second of prefill.",
           st.prompt_seconds > 0 ? double(st.prompt_tokens) / st.prompt_seconds : 0.0);
    metric("decode_tokens_per_second", "gauge", "Tokens per second of batched decoding, all slots together.",
           st.decode_seconds > 0 ? double(st.generated_tokens) / st.decode_seconds : 0.0);
    metric("requests_queued", "gauge", "Requests waiting for a slot.", double(st.queued));
    metric("requests_active", "gauge", "Requests in a slot.", double(st.active));
    metric("slots", "gauge", "Slots decoding together (--parallel).", double(st.slots));
    res.set_content(out, "text/plain; version=0.0.4");
  });

  // Both completion endpoints: a job for the engine, answered whole or streamed.
  auto complete = [this](const httplib::Request& req, httplib::Response& res, bool chat) {
    const auto t0 = Clock::now();
    auto job = std::make_shared<Job>();
    SamplingRequest sampling;
    if (chat) {
      ChatRequest r = parse_chat_request(req.body, o_.limits);
      job->messages = std::move(r.messages), job->images = std::move(r.images), sampling = r.sampling;
    } else {
      CompletionRequest r = parse_completion_request(req.body);
      job->raw_prompt = std::move(r.prompt), sampling = r.sampling;
    }
    job->gen = generation_of(sampling);
    engine_.check(*job);  // placeholders, images against the model, the prompt's length: 400 before queueing
    const std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id_++);
    const int64_t created = unix_now();
    const char* object = chat ? "chat.completion" : "text_completion";
    auto state = std::make_shared<StreamState>();
    job->on_text = [state](const std::string& piece) {
      std::lock_guard<std::mutex> lk(state->mu);
      state->pieces.push_back(piece);
      state->cv.notify_all();
      return !state->gone.load();
    };
    const std::string path = req.path;
    const bool log = o_.log;
    job->on_done = [state, job_ptr = job.get(), t0, path, log](const lm::GenerateResult& r, int status, const std::string& error) {
      std::lock_guard<std::mutex> lk(state->mu);
      state->result = r, state->status = status, state->error = error, state->done = true;
      state->cv.notify_all();
      if (log)
        std::fprintf(stderr, "POST %s %d prompt %lld (cached %lld) generated %zu tokens, %.0f ms\n", path.c_str(), status == 499 ? 499 : status,
                     (long long)r.n_prompt, (long long)job_ptr->n_cached, r.tokens.size(),
                     std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    };
    if (!engine_.submit(job)) throw ApiError(429, "too many requests are queued; try again shortly", "", "rate_limit_error");

    if (!sampling.stream) {
      std::unique_lock<std::mutex> lk(state->mu);
      state->cv.wait(lk, [&] { return state->done; });
      if (state->status != 200) throw ApiError(state->status, state->error, "", state->status >= 500 ? "server_error" : "invalid_request_error");
      const lm::GenerateResult& r = state->result;
      json choice = {{"index", 0}, {"finish_reason", finish_reason(r.stop_reason)}};
      if (chat) choice["message"] = {{"role", "assistant"}, {"content", r.text}};
      else choice["text"] = r.text, choice["logprobs"] = nullptr;
      const json body = {{"id", id}, {"object", object}, {"created", created}, {"model", o_.model_name},
                         {"choices", json::array({choice})}, {"usage", usage_of(r, job->n_cached)}, {"timings", timings_of(r, *job)}};
      res.set_content(body.dump(), "application/json");
      return;
    }
    // Server-sent events: a chunk per piece of text, the finish reason, usage when asked, [DONE].
    const std::string model = o_.model_name;
    const bool include_usage = sampling.include_usage;
    auto chunk = [id, created, model, chat](const json& delta_or_text, const json& finish) {
      json choice = {{"index", 0}, {"finish_reason", finish}};
      if (chat) choice["delta"] = delta_or_text;
      else choice["text"] = delta_or_text, choice["logprobs"] = nullptr;
      return "data: " + json{{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", created},
                             {"model", model}, {"choices", json::array({choice})}}.dump() + "\n\n";
    };
    auto opened = std::make_shared<bool>(false);
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [=, job_keep = job](size_t, httplib::DataSink& sink) {
      auto write = [&](const std::string& s) {
        if (!sink.write(s.data(), s.size())) state->gone = true;
        return !state->gone;
      };
      if (!*opened && chat) {
        *opened = true;
        if (!write(chunk({{"role", "assistant"}, {"content", ""}}, nullptr))) return false;
      }
      std::unique_lock<std::mutex> lk(state->mu);
      // Waits for text, checking now and then that the client is still there.
      while (state->pieces.empty() && !state->done) {
        state->cv.wait_for(lk, std::chrono::milliseconds(200));
        if (state->pieces.empty() && !state->done && !sink.is_writable()) {
          state->gone = true;
          return false;
        }
      }
      std::deque<std::string> pieces;
      pieces.swap(state->pieces);
      const bool done = state->done;
      const int status = state->status;
      const std::string error = state->error;
      const lm::GenerateResult r = done ? state->result : lm::GenerateResult{};
      lk.unlock();
      for (const std::string& p : pieces)
        if (!write(chunk(chat ? json{{"content", p}} : json(p), nullptr))) return false;
      if (!done) return true;
      if (status != 200) {
        write("data: " + ApiError(status, error, "", status >= 500 ? "server_error" : "invalid_request_error").json() + "\n\n");
      } else {
        if (!write(chunk(chat ? json::object() : json(""), finish_reason(r.stop_reason)))) return false;
        if (include_usage)
          write("data: " + json{{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", created},
                                {"model", model}, {"choices", json::array()}, {"usage", usage_of(r, job_keep->n_cached)},
                                {"timings", timings_of(r, *job_keep)}}.dump() + "\n\n");
      }
      write("data: [DONE]\n\n");
      sink.done();
      return true;
    }, [state](bool) { state->gone = true; });
  };
  s.Post("/v1/chat/completions", [complete](const httplib::Request& req, httplib::Response& res) { complete(req, res, true); });
  s.Post("/v1/completions", [complete](const httplib::Request& req, httplib::Response& res) { complete(req, res, false); });

  s.Post("/v1/embeddings", [this](const httplib::Request& req, httplib::Response& res) {
    const EmbeddingRequest r = parse_embedding_request(req.body, o_.limits);
    const model::Vlm& v = engine_.vlm();
    json data = json::array();
    int64_t tokens = 0;
    auto add = [&](const Tensor& rows) {  // [n, d]: mean-pooled, or one vector per row
      const int64_t n = rows.dim(0), d = rows.dim(1);
      const Tensor c = rows.contiguous();
      auto vec = [&](int64_t from, int64_t to) {
        std::vector<float> out(size_t(d), 0.0f);
        for (int64_t i = from; i < to; ++i)
          for (int64_t k = 0; k < d; ++k) out[size_t(k)] += c.data<float>()[i * d + k] / float(to - from);
        return out;
      };
      json e = {{"object", "embedding"}, {"index", data.size()}};
      if (r.per_token) {
        json rowsj = json::array();
        for (int64_t i = 0; i < n; ++i) rowsj.push_back(vec(i, i + 1));
        e["embedding"] = rowsj;
      } else {
        e["embedding"] = vec(0, n);
      }
      data.push_back(e);
    };
    std::lock_guard<std::mutex> lk(embed_mu_);
    for (size_t i = 0; i < r.images.size(); ++i) {
      if (!v.vision) throw ApiError(400, "this model reads no images (a text model without an mmproj)", "input");
      io::ImageRgb8 img;
      try {
        img = io::decode_image(reinterpret_cast<const uint8_t*>(r.images[i].data()), r.images[i].size(), "input[" + std::to_string(i) + "]");
      } catch (const Error& e) {
        throw ApiError(400, e.what(), "input");
      }
      const Tensor rows = v.vision->embed(img);
      tokens += rows.dim(0);
      add(rows);
    }
    for (size_t i = 0; i < r.texts.size(); ++i) {
      const std::vector<int32_t> ids = v.tok.encode(r.texts[i], v.tok.add_bos());
      if (int64_t(ids.size()) > engine_.context_size())
        throw ApiError(400, "input[" + std::to_string(i) + "] has " + std::to_string(ids.size()) + " tokens but the context holds " +
                                std::to_string(engine_.context_size()), "input");
      lm::KvCache cache(v.lm->config(), int64_t(ids.size()));
      tokens += int64_t(ids.size());
      add(v.lm->hidden(v.lm->embed(ids), cache));
    }
    const json body = {{"object", "list"}, {"data", data}, {"model", o_.model_name},
                       {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}};
    res.set_content(body.dump(), "application/json");
  });
}

}  // namespace ocellus::serve
