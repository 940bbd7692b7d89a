#include "ocellus/serve/engine.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string_view>

#include "ocellus/core/error.h"
#include "ocellus/io/image.h"
#include "ocellus/model/answer.h"
#include "ocellus/serve/api.h"

namespace ocellus::serve {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// An image's identity: two independent 64-bit hashes of its bytes (std::hash and FNV-1a) folded
// into one; the cache and the prompt-prefix match both compare it.
uint64_t image_hash(const std::string& bytes) {
  uint64_t fnv = 1469598103934665603ull;
  for (const char c : bytes) fnv = (fnv ^ uint8_t(c)) * 1099511628211ull;
  return std::hash<std::string_view>{}(bytes) ^ (fnv * 0x9E3779B97F4A7C15ull) ^ bytes.size();
}

// What a prompt position holds, for matching prompts: a token id (>= 0), or for an image row a
// negative key from the image's hash and the row.
int64_t image_row_key(uint64_t hash, int64_t row) {
  return -1 - int64_t((hash ^ (uint64_t(row) * 0xC2B2AE3D27D4EB4Full)) >> 1);
}

}  // namespace

struct Engine::Slot {
  explicit Slot(const lm::LmConfig& c, int64_t n_ctx) : cache(c, n_ctx) {}
  lm::KvCache cache;
  std::vector<int64_t> keys;  // what each cached position holds
  std::shared_ptr<Job> job;   // null: free
  std::unique_ptr<lm::Generation> gen;
  Clock::time_point started, decode_started;
};

Engine::Engine(const model::Vlm& vlm, text::ChatTemplate chat_template, EngineOptions options)
    : vlm_(vlm), template_(chat_template), o_(options) {
  OCELLUS_CHECK(o_.parallel >= 1 && o_.parallel <= 256, "serve: --parallel ", o_.parallel, " (1 to 256)");
  lm::GenerateParams g;
  g.n_ctx = o_.n_ctx;
  n_ctx_ = lm::context_size(g, vlm_.lm->config());
  for (int i = 0; i < o_.parallel; ++i) slots_.push_back(std::make_unique<Slot>(vlm_.lm->config(), n_ctx_));
  stats_.slots = o_.parallel;
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  stop();
  if (thread_.joinable()) thread_.join();
}

void Engine::stop() {
  std::lock_guard<std::mutex> lk(mu_);
  stopping_ = true;
  cv_.notify_all();
}

bool Engine::submit(std::shared_ptr<Job> job) {
  std::lock_guard<std::mutex> lk(mu_);
  if (stopping_ || queue_.size() >= o_.max_queue) return false;
  queue_.push_back(std::move(job));
  stats_.queued = queue_.size();
  cv_.notify_all();
  return true;
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

namespace {

model::SplicePlan plan_of(const model::Vlm& v, text::ChatTemplate t, const Job& job, int64_t n_ctx) {
  lm::GenerateParams g = job.gen;
  g.n_ctx = n_ctx;
  if (!job.messages.empty()) return model::plan_answer(v, t, job.messages, job.images.size(), g);
  OCELLUS_CHECK(v.vision || job.images.empty(), "this model reads no images (a text model without an mmproj)");
  model::SplicePlan p = model::plan_splice(v.tok, job.raw_prompt, job.images.size(), v.tok.add_bos(), "<image>",
                                           v.vision ? v.vision->markers() : model::ImageMarkers{});
  lm::check_prompt_fits(p.n_tokens(v.vision ? v.vision->n_tokens_per_image() : 0), n_ctx);
  return p;
}

}  // namespace

void Engine::check(const Job& job) const {
  try {
    plan_of(vlm_, template_, job, n_ctx_);
  } catch (const Error& e) {
    throw ApiError(400, e.what(), job.messages.empty() ? "prompt" : "messages");
  }
}

Tensor Engine::image_rows(const std::string& bytes, size_t index) {
  const uint64_t h = image_hash(bytes);
  for (auto it = images_.begin(); it != images_.end(); ++it)
    if (it->first == h) {
      images_.splice(images_.begin(), images_, it);  // most recently used first
      std::lock_guard<std::mutex> lk(mu_);
      ++stats_.images_reused;
      return images_.front().second;
    }
  io::ImageRgb8 img;
  try {
    img = io::decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "image " + std::to_string(index + 1));
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
  Tensor rows = vlm_.vision->embed(img);
  images_.emplace_front(h, rows);
  if (images_.size() > o_.image_cache) images_.pop_back();
  std::lock_guard<std::mutex> lk(mu_);
  ++stats_.images_encoded;
  return rows;
}

void Engine::start(Slot& s, const model::SplicePlan& plan) {
  Job& job = *s.job;
  const int64_t per_image = vlm_.vision ? vlm_.vision->n_tokens_per_image() : 0;
  // The prompt's positions as keys, then the longest prefix the slot's cache already holds (at
  // least the last position runs again: its logits start the reply).
  std::vector<int64_t> keys;
  std::vector<uint64_t> hashes;
  for (size_t i = 0; i < plan.text_ids.size(); ++i) {
    keys.insert(keys.end(), plan.text_ids[i].begin(), plan.text_ids[i].end());
    if (i < job.images.size()) {
      hashes.push_back(image_hash(job.images[i]));
      for (int64_t r = 0; r < per_image; ++r) keys.push_back(image_row_key(hashes.back(), r));
    }
  }
  const int64_t n = int64_t(keys.size());
  int64_t p = 0;
  const int64_t held = std::min<int64_t>(int64_t(s.keys.size()), s.cache.n_past());
  while (p < held && p < n - 1 && s.keys[size_t(p)] == keys[size_t(p)]) ++p;
  // Images wholly inside the reused prefix are not needed: zero rows stand in (only rows from p
  // on run). The others are encoded, or taken from the image cache.
  std::vector<Tensor> rows;
  int64_t at = 0;
  for (size_t i = 0; i < job.images.size(); ++i) {
    at += int64_t(plan.text_ids[i].size());
    rows.push_back(at + per_image <= p ? Tensor::zeros({per_image, vlm_.lm->config().n_embd}) : image_rows(job.images[i], i));
    at += per_image;
  }
  const model::Spliced sp = model::splice_prompt(*vlm_.lm, plan, rows);
  s.cache.truncate(std::min(p, s.cache.n_past()));
  s.keys.assign(keys.begin(), keys.end());
  job.n_cached = p;
  const Tensor logits = vlm_.lm->forward(sp.embeddings.slice(0, p, n).contiguous(), s.cache, false);
  lm::GenerateParams g = job.gen;
  g.n_ctx = n_ctx_;
  if (g.n_predict < 0) g.n_predict = int32_t(n_ctx_);
  s.gen = std::make_unique<lm::Generation>(vlm_.tok, g, sp.ids);
  job.prefill_seconds = since(s.started);
  {
    std::lock_guard<std::mutex> lk(mu_);
    stats_.prompt_tokens += uint64_t(n - p), stats_.cached_tokens += uint64_t(p), stats_.prompt_seconds += job.prefill_seconds;
  }
  s.decode_started = Clock::now();
  const std::string piece = s.gen->step(logits.data<float>(), vlm_.lm->config().n_vocab, s.cache.n_past(), s.cache.capacity());
  job.first_token_seconds = since(s.started);
  if (!piece.empty() && job.on_text && !job.on_text(piece)) return finish(s, 499, "the client went away");
  if (s.gen->done()) finish(s, 200, "");
}

void Engine::decode_step() {
  std::vector<Slot*> active;
  std::vector<int32_t> ids;
  std::vector<lm::KvCache*> caches;
  for (auto& s : slots_)
    if (s->job && s->gen && !s->gen->done()) active.push_back(s.get()), ids.push_back(s->gen->next()), caches.push_back(&s->cache);
  if (active.empty()) return;
  const auto t0 = Clock::now();
  const Tensor logits = vlm_.lm->forward_batch(vlm_.lm->embed(ids), caches, std::vector<int64_t>(active.size(), 1));
  {
    std::lock_guard<std::mutex> lk(mu_);
    stats_.decode_seconds += since(t0), stats_.generated_tokens += active.size();
  }
  const int64_t V = vlm_.lm->config().n_vocab;
  for (size_t k = 0; k < active.size(); ++k) {
    Slot& s = *active[k];
    s.keys.push_back(ids[k]);
    const std::string piece = s.gen->step(logits.data<float>() + int64_t(k) * V, V, s.cache.n_past(), s.cache.capacity());
    if (!piece.empty() && s.job->on_text && !s.job->on_text(piece)) finish(s, 499, "the client went away");
    else if (s.gen->done()) finish(s, 200, "");
  }
}

void Engine::finish(Slot& s, int status, const std::string& error) {
  std::shared_ptr<Job> job = std::move(s.job);
  lm::GenerateResult r = s.gen ? s.gen->result() : lm::GenerateResult{};
  r.prefill_seconds = job->prefill_seconds;
  r.decode_seconds = since(s.decode_started);
  s.gen.reset();
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++stats_.requests;
    if (status != 200) ++stats_.errors;
    --stats_.active;
  }
  if (job->on_done) job->on_done(r, status, error);
}

void Engine::loop() {
  for (;;) {
    std::vector<std::shared_ptr<Job>> admitted;
    {
      std::unique_lock<std::mutex> lk(mu_);
      auto busy = [&] {
        for (auto& s : slots_)
          if (s->job) return true;
        return false;
      };
      cv_.wait(lk, [&] { return stopping_ || !queue_.empty() || busy(); });
      if (stopping_) break;
      size_t free = 0;
      for (auto& s : slots_) free += !s->job;
      while (free > 0 && !queue_.empty()) admitted.push_back(std::move(queue_.front())), queue_.pop_front(), --free;
      stats_.queued = queue_.size(), stats_.active += admitted.size();
    }
    for (auto& job : admitted) admit(std::move(job));
    decode_step();
  }
  // Shutting down: what runs ends, what waits is refused.
  for (auto& s : slots_)
    if (s->job) finish(*s, 503, "the server is shutting down");
  std::deque<std::shared_ptr<Job>> left;
  {
    std::lock_guard<std::mutex> lk(mu_);
    left.swap(queue_);
    stats_.queued = 0;
  }
  for (auto& job : left)
    if (job->on_done) job->on_done({}, 503, "the server is shutting down");
}

void Engine::admit(std::shared_ptr<Job> job) {
  // The free slot whose cache shares the longest start with this prompt's text (a conversation's
  // next turn finds the slot of its previous one); ties go to the first.
  model::SplicePlan plan;
  std::string bad;  // the prompt's problem: the server checks it before queueing; a caller that did not is refused here
  try {
    plan = plan_of(vlm_, template_, *job, n_ctx_);
  } catch (const Error& e) {
    bad = e.what();
  }
  const std::vector<int32_t> first = bad.empty() ? plan.text_ids[0] : std::vector<int32_t>{};
  Slot* best = nullptr;
  int64_t best_len = -1;
  for (auto& s : slots_) {
    if (s->job) continue;
    int64_t m = 0;
    while (m < int64_t(first.size()) && m < int64_t(s->keys.size()) && s->keys[size_t(m)] == first[size_t(m)]) ++m;
    if (m > best_len) best = s.get(), best_len = m;
  }
  Slot& s = *best;
  s.job = std::move(job);
  s.started = s.decode_started = Clock::now();
  if (!bad.empty()) return finish(s, 400, bad);
  try {
    start(s, plan);
  } catch (const ApiError& e) {
    finish(s, e.status, e.what());
  } catch (const Error& e) {
    s.keys.clear(), s.cache.clear();
    finish(s, 400, e.what());
  } catch (const std::exception& e) {
    s.keys.clear(), s.cache.clear();
    finish(s, 500, e.what());
  }
}

}  // namespace ocellus::serve
