// The `ocellus` command: thin; every verb calls a library function.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "ocellus/core/cpu.h"
#include "ocellus/core/threads.h"

int main(int argc, char** argv) {
  CLI::App app{"ocellus: build, train and run small vision-language models"};
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("-t,--threads", threads, "Worker threads (default: OCELLUS_THREADS or all cores)");

  auto* info = app.add_subcommand("info", "Show the CPU features and the kernels ocellus picked");
  info->callback([&] {
    ocellus::set_num_threads(threads);
    std::printf("ocellus 0.1.0\n");
    std::printf("cpu features : %s\n", ocellus::cpu_features().str().c_str());
    std::printf("kernels      : %s\n", ocellus::isa_name(ocellus::active_isa()));
    std::printf("threads      : %d\n", ocellus::num_threads());
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ocellus: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
