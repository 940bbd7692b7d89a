#pragma once
// The server's model runner: one thread owns the model and runs every request in a slot of its
// own (its KV cache, its generation). At each step the active slots' next tokens go through the
// model as one batch (lm::LanguageModel::forward_batch), so the weights are read once for all
// of them. A slot keeps the prompt it last ran: a request that starts the same way (a
// conversation re-sent with one more turn) reuses the KV of the common prefix, and an image
// seen before (the same bytes) is not encoded again. Requests wait in a bounded FIFO queue.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ocellus/lm/generate.h"
#include "ocellus/model/vlm.h"
#include "ocellus/text/chat.h"

namespace ocellus::serve {

struct EngineOptions {
  int parallel = 4;          // slots decoding together
  int64_t n_ctx = 0;         // per slot; 0: the model's context, at most 4096
  size_t max_queue = 64;     // requests waiting beyond the slots; more are refused (429)
  size_t image_cache = 32;   // encoded images kept
};

// One request as the engine runs it. The callbacks run on the engine's thread.
struct Job {
  std::vector<text::Message> messages;  // rendered with the chat template (chat), or
  std::string raw_prompt;               // used as it is (completions) when messages is empty
  std::vector<std::string> images;      // encoded bytes, one per placeholder
  lm::GenerateParams gen;
  // Each new piece of text; returns false when the client is gone (the slot is freed at once).
  std::function<bool(const std::string&)> on_text;
  // Once, at the end: the result, or an error (status and message) when it failed.
  std::function<void(const lm::GenerateResult&, int status, const std::string& error)> on_done;
  // Filled in by the engine.
  int64_t n_cached = 0;                 // prompt positions reused from the slot's cache
  double prefill_seconds = 0, first_token_seconds = 0;
};

struct EngineStats {
  uint64_t requests = 0, errors = 0, prompt_tokens = 0, cached_tokens = 0, generated_tokens = 0;
  uint64_t images_encoded = 0, images_reused = 0;
  double prompt_seconds = 0, decode_seconds = 0;
  size_t queued = 0, active = 0;
  int slots = 0;
};

class Engine {
 public:
  Engine(const model::Vlm& vlm, text::ChatTemplate chat_template, EngineOptions options);
  ~Engine();  // cancels what is queued, finishes nothing more, joins the thread
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a job; false when the queue is full (the caller answers 429).
  bool submit(std::shared_ptr<Job> job);
  // Stops taking jobs, ends the running ones (their on_done gets status 503) and the queued ones.
  void stop();
  EngineStats stats() const;
  int64_t context_size() const { return n_ctx_; }
  const model::Vlm& vlm() const { return vlm_; }

  // Checks a job's prompt (placeholders against images, its length against the context) without
  // running it: the HTTP layer answers 400 before queueing. Throws ApiError.
  void check(const Job& job) const;

 private:
  struct Slot;
  void loop();
  void admit(std::shared_ptr<Job> job);
  void start(Slot& s, const model::SplicePlan& plan);
  void decode_step();
  void finish(Slot& s, int status, const std::string& error);
  Tensor image_rows(const std::string& bytes, size_t index);

  const model::Vlm& vlm_;
  text::ChatTemplate template_;
  EngineOptions o_;
  int64_t n_ctx_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::list<std::pair<uint64_t, Tensor>> images_;  // most recent first: hash of the bytes, rows

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  EngineStats stats_;
  std::thread thread_;
};

}  // namespace ocellus::serve
