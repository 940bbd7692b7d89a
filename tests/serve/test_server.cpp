// `ocellus serve` in process (serve/server.h over serve/engine.h, on the bundled VLM, a free
// port of 127.0.0.1): answers equal the library's own (model::answer), streamed or not and with
// several requests decoding together; a conversation's next turn reuses its prefix; every bad
// request gets OpenAI's error shape and its status, and the server goes on.
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <thread>

#include <nlohmann/json.hpp>

#include "ocellus/io/image.h"
#include "ocellus/lm/family.h"
#include "ocellus/model/answer.h"
#include "ocellus/serve/server.h"
#include "testutil.h"

using namespace ocellus;
using nlohmann::json;

namespace {

const std::string kModels = std::string(OCELLUS_TESTS_DIR) + "/../models/fashion-vlm";

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string base64(const std::string& bytes) {
  static const char* A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    acc = (acc << 8) | c, bits += 8;
    while (bits >= 6) bits -= 6, out.push_back(A[(acc >> bits) & 63]);
  }
  if (bits > 0) out.push_back(A[(acc << (6 - bits)) & 63]);
  while (out.size() % 4) out.push_back('=');
  return out;
}

// The bundled VLM served on a free port for the whole suite.
struct Served {
  model::Vlm vlm;
  text::ChatTemplate tmpl;
  std::unique_ptr<serve::Engine> engine;
  std::unique_ptr<serve::Server> server;
  std::thread thread;
  int port = 0;
  std::string image_uri;
  Served(int parallel, size_t max_queue, size_t max_body) {
    vlm = model::load_vlm(kModels + "/model.gguf", kModels + "/mmproj.gguf");
    tmpl = lm::resolve_chat_template("", vlm.text_file, vlm.tok);
    serve::EngineOptions eo;
    eo.parallel = parallel, eo.max_queue = max_queue;
    engine = std::make_unique<serve::Engine>(vlm, tmpl, eo);
    serve::ServerOptions so;
    so.port = 0, so.log = false, so.max_body = max_body, so.model_name = "fashion-vlm";
    so.limits.media_path = kModels;
    server = std::make_unique<serve::Server>(*engine, so);
    port = server->bind();
    thread = std::thread([this] { server->run(); });
    image_uri = "data:image/png;base64," + base64(file_bytes(kModels + "/example.png"));
  }
  ~Served() {
    server->stop();
    thread.join();
    engine->stop();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    return c;
  }
  // The library's greedy answer to one user message with the example image.
  std::string library_answer(const std::string& question, int max_tokens) const {
    lm::GenerateParams g;
    g.n_predict = max_tokens;
    g.sampling.temperature = 0;
    const Tensor rows = vlm.vision->embed(io::load_image(kModels + "/example.png"));
    return model::answer(vlm, tmpl, {{"user", model::image_placeholders(1) + question}}, {rows}, g).text;
  }
};

json chat_body(const std::string& image_uri, const std::string& question, bool stream) {
  return {{"model", "fashion-vlm"}, {"temperature", 0}, {"max_tokens", 24}, {"stream", stream},
          {"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}, {"image_url", {{"url", image_uri}}}},
                                                        {{"type", "text"}, {"text", question}}}}}}}};
}

// The text of a server-sent-events body, checking its shape: chunks, then [DONE].
std::string streamed_text(const std::string& body, json* usage, std::string* finish) {
  std::string text;
  size_t at = 0;
  bool done = false;
  while (at < body.size()) {
    const size_t end = body.find("\n\n", at);
    EXPECT_NE(end, std::string::npos) << "an event without its blank line";
    if (end == std::string::npos) break;
    const std::string line = body.substr(at, end - at);
    at = end + 2;
    EXPECT_EQ(line.rfind("data: ", 0), 0u) << line;
    EXPECT_FALSE(done) << "an event after [DONE]";
    if (line == "data: [DONE]") {
      done = true;
      continue;
    }
    const json j = json::parse(line.substr(6));
    EXPECT_EQ(j["object"], "chat.completion.chunk");
    if (j.contains("usage")) *usage = j["usage"];
    for (const json& c : j["choices"]) {
      if (c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
      if (!c["finish_reason"].is_null()) *finish = c["finish_reason"];
    }
  }
  EXPECT_TRUE(done);
  return text;
}

}  // namespace

TEST(Serve, ChatWithAnImageAnswersAsTheLibraryStreamedOrNot) {
  Served s(4, 16, 8u << 20);
  auto c = s.client();
  const std::string question = "What is in the top left cell? Answer briefly.";
  const std::string want = s.library_answer(question, 24);
  EXPECT_EQ(want, "dress");  // the bundled model reads its example right
  auto r = c.Post("/v1/chat/completions", chat_body(s.image_uri, question, false).dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], want);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  const int64_t per_image = s.vlm.vision->n_tokens_per_image();
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int64_t>(), per_image);
  EXPECT_EQ(j["usage"]["total_tokens"], j["usage"]["prompt_tokens"].get<int64_t>() + j["usage"]["completion_tokens"].get<int64_t>());

  json body = chat_body(s.image_uri, question, true);
  body["stream_options"] = {{"include_usage", true}};
  r = c.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
  json usage;
  std::string finish;
  EXPECT_EQ(streamed_text(r->body, &usage, &finish), want);
  EXPECT_EQ(finish, "stop");
  EXPECT_EQ(usage["completion_tokens"], j["usage"]["completion_tokens"]);
  // The same conversation again: its prompt comes from the slot's cache, all but the last position.
  EXPECT_EQ(usage["prompt_tokens_details"]["cached_tokens"], usage["prompt_tokens"].get<int64_t>() - 1);

  // The conversation's next turn: all of the first turn's prompt comes from the slot's cache
  // (the reply re-tokenized may differ in its last tokens), and the image is not encoded again.
  json next = chat_body(s.image_uri, question, false);
  next["messages"].push_back({{"role", "assistant"}, {"content", want}});
  next["messages"].push_back({{"role", "user"}, {"content", "Where is the pullover? Answer briefly."}});
  r = c.Post("/v1/chat/completions", next.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json second = json::parse(r->body);
  EXPECT_GE(second["usage"]["prompt_tokens_details"]["cached_tokens"].get<int64_t>(), j["usage"]["prompt_tokens"].get<int64_t>());
  std::printf("time to first token: first turn %.1f ms (%lld positions computed), second turn %.1f ms (%lld computed, %lld reused)\n",
              j["timings"]["first_token_ms"].get<double>(), (long long)j["timings"]["prompt_n"].get<int64_t>(),
              second["timings"]["first_token_ms"].get<double>(), (long long)second["timings"]["prompt_n"].get<int64_t>(),
              (long long)second["timings"]["cache_n"].get<int64_t>());

  // The image by path under --media-path, and /v1/models, /health, /metrics.
  body = chat_body("file://example.png", question, false);
  r = c.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["choices"][0]["message"]["content"], want);
  r = c.Get("/v1/models");
  ASSERT_TRUE(r);
  EXPECT_EQ(json::parse(r->body)["data"][0]["id"], "fashion-vlm");
  r = c.Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  r = c.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_NE(r->body.find("ocellus_requests_total 4"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("ocellus_images_encoded_total 1"), std::string::npos) << r->body;  // one image, seen four times
  r = c.Get("/");
  ASSERT_TRUE(r);
  EXPECT_NE(r->body.find("<textarea id=\"input\""), std::string::npos);
}

TEST(Serve, RequestsDecodedTogetherGetTheirOwnAnswers) {
  Served s(4, 16, 8u << 20);
  const std::vector<std::string> questions = {"What is in the top left cell? Answer briefly.", "Where is the pullover? Answer briefly.",
                                              "How many dresses are there? Answer briefly.", "Is there a bag in the picture? Answer briefly.",
                                              "What is in the top right cell? Answer briefly.", "Describe the picture."};
  std::vector<std::string> want;
  for (const std::string& q : questions) want.push_back(s.library_answer(q, 24));
  EXPECT_EQ(want[5], "a dress in the top left and a pullover in the top right");
  std::vector<std::future<std::string>> got;
  for (size_t i = 0; i < questions.size(); ++i)
    got.push_back(std::async(std::launch::async, [&, i] {
      auto c = s.client();
      auto r = c.Post("/v1/chat/completions", chat_body(s.image_uri, questions[i], i % 2 == 1).dump(), "application/json");
      if (!r || r->status != 200) return std::string("(failed)");
      if (i % 2 == 0) return json::parse(r->body)["choices"][0]["message"]["content"].get<std::string>();
      json usage;
      std::string finish;
      return streamed_text(r->body, &usage, &finish);
    }));
  for (size_t i = 0; i < questions.size(); ++i) EXPECT_EQ(got[i].get(), want[i]) << questions[i];
  const serve::EngineStats st = s.engine->stats();
  EXPECT_EQ(st.requests, questions.size());
  EXPECT_EQ(st.errors, 0u);
}

TEST(Serve, BadRequestsGetOpenAIErrorsAndTheServerGoesOn) {
  Served s(1, 1, 1u << 20);
  auto c = s.client();
  struct Case {
    std::string what, body;
    int status;
    std::string says;
  };
  const std::string png = s.image_uri;
  auto with_content = [](const json& content) { return json{{"messages", {{{"role", "user"}, {"content", content}}}}}.dump(); };
  const std::vector<Case> cases = {
      {"malformed JSON", "{\"messages\": [", 400, "malformed JSON"},
      {"not an object", "[1, 2]", 400, "must be a JSON object"},
      {"bytes that are not UTF-8", "{\"messages\": \"\xef\"}", 400, "malformed JSON"},  // the message quotes them as U+FFFD
      {"a number out of range", "{\"max_tokens\": 4e744}", 400, "malformed JSON"},
      {"no messages", "{}", 400, "'messages' is required"},
      {"messages of the wrong type", R"({"messages": "hi"})", 400, "'messages' must be"},
      {"a bad role", R"({"messages": [{"role": "robot", "content": "hi"}]})", 400, "'messages[0].role' must be"},
      {"temperature of the wrong type", R"({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"})", 400,
       "'temperature' must be a number"},
      {"max_tokens 0", R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0})", 400, "'max_tokens' must be at least 1"},
      {"bad base64", with_content({{{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64,iVBO*w0K"}}}}}), 400,
       "not in the base64 alphabet"},
      {"an undecodable image", with_content({{{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64," + base64("not a png at all")}}}}}),
       400, "image 1"},
      {"a remote URL", with_content({{{"type", "image_url"}, {"image_url", {{"url", "https://example.com/a.png"}}}}}), 400,
       "not fetched by this server"},
      {"a file outside the media path", with_content({{{"type", "image_url"}, {"image_url", {{"url", "file:///etc/passwd"}}}}}), 400,
       "not under the media path"},
      {"more placeholders than images", with_content({{{"type", "text"}, {"text", "<image> and <image>"}}}), 400, "placeholder"},
      {"a prompt over the context", with_content(std::string(20000, 'a') + " b"), 400, "context holds"},
      {"a body over the limit", with_content(std::string(2u << 20, 'a')), 413, "size limit"},
  };
  for (const Case& k : cases) {
    auto r = c.Post("/v1/chat/completions", k.body, "application/json");
    ASSERT_TRUE(r) << k.what;
    EXPECT_EQ(r->status, k.status) << k.what << ": " << r->body;
    const json j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << k.what << ": " << r->body;
    EXPECT_TRUE(j["error"]["message"].is_string() && j["error"]["type"].is_string() && j["error"].contains("code")) << r->body;
    EXPECT_NE(j["error"]["message"].get<std::string>().find(k.says), std::string::npos) << k.what << ": " << r->body;
  }
  // One slot, one queue place: of three long requests sent at once, at least one is refused with 429.
  std::vector<std::future<int>> statuses;
  json longer = chat_body(png, "Describe the picture.", false);
  longer["max_tokens"] = 200;
  for (int i = 0; i < 3; ++i)
    statuses.push_back(std::async(std::launch::async, [&] {
      auto cl = s.client();
      auto r = cl.Post("/v1/chat/completions", longer.dump(), "application/json");
      return r ? r->status : -1;
    }));
  int refused = 0, ok = 0;
  for (auto& f : statuses) {
    const int st = f.get();
    refused += st == 429, ok += st == 200;
  }
  EXPECT_GE(refused, 1);
  EXPECT_GE(ok, 1);
  // And it still answers.
  auto r = c.Post("/v1/chat/completions", chat_body(png, "What is in the top left cell? Answer briefly.", false).dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
}

TEST(Serve, EmbeddingsOfImagesAreTheConnectorRowsPooled) {
  Served s(1, 4, 8u << 20);
  auto c = s.client();
  const json req = {{"input", {{{"type", "image_url"}, {"image_url", {{"url", s.image_uri}}}}}}};
  auto r = c.Post("/v1/embeddings", req.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const Tensor rows = s.vlm.vision->embed(io::load_image(kModels + "/example.png"));
  const json e = json::parse(r->body)["data"][0]["embedding"];
  ASSERT_EQ(int64_t(e.size()), rows.dim(1));
  double worst = 0;
  for (int64_t k = 0; k < rows.dim(1); ++k) {
    double mean = 0;
    for (int64_t i = 0; i < rows.dim(0); ++i) mean += rows.data<float>()[i * rows.dim(1) + k] / double(rows.dim(0));
    worst = std::max(worst, std::abs(e[size_t(k)].get<double>() - mean));
  }
  EXPECT_LE(worst, 1e-5);
  json per = req;
  per["pooling"] = "none";
  r = c.Post("/v1/embeddings", per.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(int64_t(json::parse(r->body)["data"][0]["embedding"].size()), rows.dim(0));
  r = c.Post("/v1/embeddings", R"({"input": ["a bag", "a sneaker"]})", "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["data"].size(), 2u);
  EXPECT_EQ(int64_t(json::parse(r->body)["data"][1]["embedding"].size()), s.vlm.lm->config().n_embd);
}

TEST(Serve, AClientThatLeavesFreesItsSlotAtOnce) {
  Served s(1, 4, 8u << 20);
  json body = chat_body(s.image_uri, "Tell a long story.", true);
  body["max_tokens"] = 400;
  body["temperature"] = 2.0;  // sampled near-uniformly: it goes on long past the model's usual end
  const auto t0 = std::chrono::steady_clock::now();
  // The client reads two chunks and hangs up. A reply that ends (end-of-sequence) before the
  // client leaves shows nothing: then again with another seed, a few times at most.
  for (int seed = 1; seed <= 5 && s.engine->stats().errors == 0; ++seed) {
    body["seed"] = seed;
    auto c = s.client();
    int chunks = 0;
    httplib::Request req;
    req.method = "POST", req.path = "/v1/chat/completions", req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 2; };
    EXPECT_FALSE(c.send(req));
    for (int i = 0; i < 50 && s.engine->stats().requests < uint64_t(seed); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const uint64_t before = s.engine->stats().requests;
  EXPECT_EQ(s.engine->stats().errors, 1u);  // the one whose client left (status 499)
  // The one slot is free for the next request right away: it answers within seconds.
  auto c2 = s.client();
  auto r2 = c2.Post("/v1/chat/completions", chat_body(s.image_uri, "What is in the top left cell? Answer briefly.", false).dump(),
                    "application/json");
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->status, 200) << r2->body;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 30.0);
  EXPECT_EQ(s.engine->stats().requests, before + 1);
  EXPECT_EQ(s.engine->stats().errors, 1u);
}
