// The `ocellus` command: thin; every verb calls a library function. The verbs are registered
// from src/cli/verbs_*.cpp; this file parses and turns errors into one line and an exit status.
#include "cli.h"

int main(int argc, char** argv) {
  using namespace ocellus::cli;
  CLI::App app{"ocellus: build, train and run small vision-language models"};
  app.require_subcommand(1);
  app.fallthrough();  // -t works after the verb too: `ocellus run ... -t 2`
  app.add_option("-t,--threads", globals().threads, "Worker threads (default: OCELLUS_THREADS or all cores)")->check(CLI::Range(0, 4096));
  // Applied once, after the whole line is parsed (-t may follow the verb) and before the verb runs.
  app.parse_complete_callback([] { ocellus::set_num_threads(globals().threads); });
  // Every verb, in the order --help lists them.
  constexpr void (*kVerbs[])(CLI::App&) = {add_info, add_inspect, add_synth, add_quantize, add_tokenize, add_train_tokenizer,
                                           add_generate, add_logits, add_embed, add_run, add_chat, add_serve,
                                           add_cache, add_data, add_init, add_eval, add_train, add_generate_image,
                                           add_eval_fusion};
  for (auto add_verb : kVerbs) add_verb(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version print and exit 0; a wrong option or value is one error line and
    // exit status 2 (the usage-error convention of getopt and argparse), other errors 1.
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "ocellus: error: %s (see --help)\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ocellus: error: %s\n", e.what());
    return 1;
  }
  return globals().failures ? 1 : 0;
}
