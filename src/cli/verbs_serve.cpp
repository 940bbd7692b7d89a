// The `ocellus serve` verb: the OpenAI-compatible server (serve/server.h) over a VLM or a text
// model, until SIGINT / SIGTERM.
#include <csignal>
#include <pthread.h>

#include <chrono>
#include <thread>

#include "cli.h"
#include "ocellus/io/file.h"
#include "ocellus/serve/server.h"

namespace ocellus::cli {

void add_serve(CLI::App& app) {
  auto* sv = app.add_subcommand("serve", "Serve a VLM or text model over HTTP: OpenAI-compatible API (chat with images, completions, "
                                         "embeddings) and a chat page (default: the bundled model)");
  static std::string model, mmproj, chat_template, media_path, alias;
  static ocellus::serve::ServerOptions so;
  static ocellus::serve::EngineOptions eo;
  sv->add_option("-m,--model", model, "Text model GGUF (with --mmproj for images; without, text only), or a Hugging Face "
                                      "LLaVA-style folder (default: the bundled models/fashion-vlm)");
  sv->add_option("--mmproj", mmproj, "Vision projector (mmproj GGUF)");
  sv->add_option("--chat-template", chat_template, "llama2, llama3, vicuna, chatml, phi2 (default: from the model)");
  sv->add_option("--host", so.host, "Address to listen on")->capture_default_str();
  sv->add_option("--port", so.port, "Port (0: any free one)")->capture_default_str()->check(CLI::Range(0, 65535));
  sv->add_option("--parallel,--np", eo.parallel, "Requests decoded together, each in a slot of its own")->capture_default_str()
      ->check(CLI::Range(1, 256));
  sv->add_option("-c,--ctx", eo.n_ctx, "Context per slot in tokens (default: the model's, at most 4096)")->check(kContext);
  sv->add_option("--max-queue", eo.max_queue, "Requests that may wait for a slot; more get 429")->capture_default_str()
      ->check(CLI::Range(size_t(0), size_t(1) << 20));
  sv->add_option("--media-path", media_path, "Folder whose image files requests may name (file:// or a relative path); "
                                             "without it only inline data: URIs are read")->check(CLI::ExistingDirectory);
  sv->add_option("--alias", alias, "Model name in responses and /v1/models (default: the model file's name)");
  sv->callback([=] {
    const auto t0 = std::chrono::steady_clock::now();
    ocellus::model::Vlm v;
    const bool text_only = !model.empty() && mmproj.empty() && !ocellus::io::is_directory(model);
    if (text_only) {
      v.lm = ocellus::lm::load_model(model);
      v.tok = ocellus::text::Tokenizer::from_file(model);
      v.text_file = model;
    } else {
      VlmOptions vo;
      vo.model = model, vo.mmproj = mmproj;
      v = vo.load();
    }
    const auto t = ocellus::lm::resolve_chat_template(chat_template, v.text_file, v.tok);
    const auto loaded = std::chrono::steady_clock::now();
    so.limits.media_path = media_path;
    so.model_name = !alias.empty() ? alias : std::filesystem::path(model.empty() ? v.text_file : model).filename().string();
    if (model.empty()) so.model_name = "fashion-vlm";

    // SIGINT / SIGTERM go to one watcher thread (blocked everywhere else, before any thread starts).
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
    ocellus::serve::Engine engine(v, t, eo);
    ocellus::serve::Server server(engine, so);
    const int port = server.bind();
    std::atomic<bool> stopping{false};
    std::thread watcher([&] {
      const timespec tick{0, 200'000'000};
      while (!stopping) {
        const int sig = sigtimedwait(&sigs, nullptr, &tick);
        if (sig == SIGINT || sig == SIGTERM) {
          std::fprintf(stderr, "ocellus serve: %s: finishing\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
          stopping = true;
          engine.stop();
          server.stop();
        }
      }
    });
    std::printf("ocellus serve: http://%s:%d (model %s, %s, %d slots of %lld tokens, chat template %s; "
                "loaded in %.0f ms, listening %.1f ms later)\n",
                so.host.c_str(), port, so.model_name.c_str(), v.vision ? "reads images" : "text only", eo.parallel,
                (long long)engine.context_size(), ocellus::text::chat_template_name(t),
                std::chrono::duration<double, std::milli>(loaded - t0).count(), ms_since(loaded));
    std::fflush(stdout);
    server.run();
    stopping = true;
    watcher.join();
    engine.stop();
    std::fprintf(stderr, "ocellus serve: stopped\n");
  });
}

}  // namespace ocellus::cli
