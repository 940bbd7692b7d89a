// `ocellus serve` as a user runs it (the CLI, a free port of 127.0.0.1) with clients no one here
// wrote: the official OpenAI client (npm `openai`), the chat page in headless Chromium (Debian's
// chromium through npm `puppeteer-core`), and a load test of 64 clients at once. The npm packages
// are installed into build/npm by scripts/build.sh (npm ci, tests/serve/package-lock.json).
// Every process a test starts is stopped by it.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include <nlohmann/json.hpp>

#include "testutil.h"

using nlohmann::json;

namespace {

const std::string kImage = std::filesystem::weakly_canonical(std::string(OCELLUS_TESTS_DIR) + "/../models/fashion-vlm/example.png").string();
const std::string kQuestion = "What is in the top left cell? Answer briefly.";

// `ocellus serve --port 0 ARGS` in a child process; the port from its first line.
struct ServerProcess {
  pid_t pid = -1;
  int port = 0;
  std::string log;  // its stderr
  explicit ServerProcess(const std::vector<std::string>& extra) {
    log = ocellus::test::temp_path("serve_" + std::to_string(extra.size()) + ".log");
    int fds[2];
    if (pipe(fds) != 0) return;
    pid = fork();
    if (pid == 0) {
      dup2(fds[1], 1);
      FILE* err = std::fopen(log.c_str(), "w");
      if (err) dup2(fileno(err), 2);
      close(fds[0]);
      std::vector<std::string> args = {OCELLUS_CLI, "serve", "--port", "0"};
      args.insert(args.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    // The first line says where it listens: "ocellus serve: http://127.0.0.1:PORT (...)".
    std::string line;
    pollfd p{fds[0], POLLIN, 0};
    const auto t0 = std::chrono::steady_clock::now();
    char c;
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60)) {
      if (poll(&p, 1, 200) > 0 && read(fds[0], &c, 1) == 1) line += c;
      else if (waitpid(pid, nullptr, WNOHANG) == pid) { pid = -1; break; }
    }
    close(fds[0]);
    const size_t at = line.find("127.0.0.1:");
    if (at != std::string::npos) port = std::atoi(line.c_str() + at + 10);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
  // SIGTERM, then the exit status (-1: it had to be killed).
  int stop() {
    if (pid <= 0) return -1;
    kill(pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 100; ++i) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    pid = -1;
    return -1;
  }
  ~ServerProcess() { stop(); }
};

// Runs a script of tests/serve (copied into build/npm beside its node_modules); its last line of
// stdout parsed as JSON.
json node(const std::string& script, const std::vector<std::string>& args) {
  std::string cmd = "node '" + std::string(OCELLUS_NPM_DIR) + "/" + script + "'";
  for (const std::string& a : args) cmd += " '" + a + "'";
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  EXPECT_NE(p, nullptr);
  if (!p) return json();
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), p)) > 0;) out.append(buf, n);
  const int status = pclose(p);
  EXPECT_EQ(status, 0) << cmd << "\n" << out;
  const size_t last = out.rfind('{');
  const size_t line = last == std::string::npos ? std::string::npos : out.rfind('\n', last);
  const json j = json::parse(out.substr(line == std::string::npos ? 0 : line + 1), nullptr, false);
  EXPECT_TRUE(j.is_object()) << out;
  return j;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(ServeClients, TheOpenAIClientChatsWithAnImageStreamsAndReadsUsage) {
  ServerProcess s({});
  ASSERT_GT(s.port, 0) << read_file(s.log);
  const json r = node("openai_client.mjs", {s.url(), kImage, kQuestion});
  EXPECT_EQ(r["text"], "dress");  // the bundled model reads its example right (as `ocellus run` does)
  EXPECT_EQ(r["finish"], "stop");
  EXPECT_EQ(r["streamed"], r["text"]);
  EXPECT_GE(r["chunks"].get<int>(), 3);
  EXPECT_GT(r["usage"]["prompt_tokens"].get<int>(), 16);
  EXPECT_EQ(r["streamed_usage"]["completion_tokens"], r["usage"]["completion_tokens"]);
  EXPECT_EQ(r["bad"]["status"], 400);
  EXPECT_EQ(r["bad"]["isBadRequest"], true);
  EXPECT_EQ(r["models"], json::array({"fashion-vlm"}));
  EXPECT_EQ(s.stop(), 0) << read_file(s.log);
  EXPECT_NE(read_file(s.log).find("ocellus serve: stopped"), std::string::npos);
}

TEST(ServeClients, TheChatPageAnswersInHeadlessChromium) {
  ServerProcess s({});
  ASSERT_GT(s.port, 0) << read_file(s.log);
  const std::string shot = ocellus::test::temp_path("serve_page.png");
  const json r = node("browser.mjs", {s.url(), kImage, kQuestion, shot});
  EXPECT_EQ(r["title"], "ocellus");
  EXPECT_EQ(r["answer"], "dress");
  EXPECT_EQ(r["user_images"], 1);
  EXPECT_EQ(r["after_new"], 0);
  EXPECT_EQ(r["errors"], json::array());
  for (const json& u : r["requests"]) {  // nothing asked of anyone but this server (images are data: URIs)
    const std::string url = u.get<std::string>();
    EXPECT_TRUE(url.rfind(s.url(), 0) == 0 || url.rfind("data:", 0) == 0) << url;
  }
  EXPECT_TRUE(std::filesystem::exists(shot));
  EXPECT_EQ(s.stop(), 0) << read_file(s.log);
}

TEST(ServeClients, SixtyFourClientsAtOnceGetNoErrors) {
  ServerProcess s({"--parallel", "8", "--max-queue", "64"});
  ASSERT_GT(s.port, 0) << read_file(s.log);
  const json r = node("load.mjs", {s.url(), kImage, "64", "3"});
  EXPECT_EQ(r["requests"], 192);
  EXPECT_EQ(r["errors"], 0) << r["first_error"].dump();
  std::printf("64 clients x 3 requests (text, image, image streamed; 16 tokens each at most), 8 slots: p50 %.0f ms, p99 %.0f ms, "
              "%.1f generated tokens/s over %.1f s\n",
              r["p50_ms"].get<double>(), r["p99_ms"].get<double>(), r["tokens_per_second"].get<double>(), r["seconds"].get<double>());
  // Requests and tokens counted by the server match what the clients got.
  EXPECT_EQ(s.stop(), 0) << read_file(s.log);
  EXPECT_NE(read_file(s.log).find("POST /v1/chat/completions 200"), std::string::npos);
}
