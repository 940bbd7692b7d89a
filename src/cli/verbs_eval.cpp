#include "ocellus/lm/family.h"
// The `ocellus` verbs eval: scoring a VLM on an evaluation file.
#include "ocellus/lm/family.h"
// Each add_* registers one verb; its option values are static: they live as long as the
#include "ocellus/lm/family.h"
// App that parses into them (one per process).
#include "ocellus/lm/family.h"
#include "cli.h"
#include "ocellus/lm/family.h"

#include "ocellus/lm/family.h"
namespace ocellus::cli {
#include "ocellus/lm/family.h"

#include "ocellus/lm/family.h"
void add_eval(CLI::App& app) {
#include "ocellus/lm/family.h"
  auto* ev = app.add_subcommand("eval", "Answer an evaluation file's questions greedily and score them (per category, POPE yes/no, "
#include "ocellus/lm/family.h"
                                "multiple choice)");
#include "ocellus/lm/family.h"
  static std::string ev_model, ev_mmproj, ev_questions, ev_images, ev_out, ev_template;
#include "ocellus/lm/family.h"
  static int32_t ev_max = 16;
#include "ocellus/lm/family.h"
  static int64_t ev_limit = 0;
#include "ocellus/lm/family.h"
  ev->add_option("-m,--model", ev_model, "Text model GGUF (with --mmproj) or a Hugging Face LLaVA-style folder")->required();
#include "ocellus/lm/family.h"
  ev->add_option("--mmproj", ev_mmproj, "Vision projector (mmproj GGUF)");
#include "ocellus/lm/family.h"
  ev->add_option("--questions", ev_questions, "Evaluation JSON: [{question_id, image, question, answer, category, choices?}]")->required();
#include "ocellus/lm/family.h"
  ev->add_option("--images", ev_images, "Folder the image paths are relative to");
#include "ocellus/lm/family.h"
  ev->add_option("-o,--output", ev_out, "Write the report and every answer as JSON");
#include "ocellus/lm/family.h"
  ev->add_option("--max-tokens", ev_max, "Tokens per answer at most")->capture_default_str()->check(CLI::Range(1, 1 << 20));
#include "ocellus/lm/family.h"
  ev->add_option("--limit", ev_limit, "Only the first N questions (0: all)")->check(kCount);
#include "ocellus/lm/family.h"
  ev->add_option("--chat-template", ev_template, "llama2, llama3, vicuna, chatml, phi2 (default: from the model)");
#include "ocellus/lm/family.h"
  ev->callback([=] {
#include "ocellus/lm/family.h"
    auto qs = ocellus::eval::read_questions(ev_questions);
#include "ocellus/lm/family.h"
    if (ev_limit > 0 && int64_t(qs.size()) > ev_limit) qs.resize(size_t(ev_limit));
#include "ocellus/lm/family.h"
    const ocellus::model::Vlm v = ocellus::model::load_vlm(ev_model, ev_mmproj);
#include "ocellus/lm/family.h"
    const auto t0 = std::chrono::steady_clock::now();
#include "ocellus/lm/family.h"
    ocellus::ProgressLine progress;
#include "ocellus/lm/family.h"
    const auto answers = ocellus::eval::answer_all(v, qs, ev_images, ocellus::lm::resolve_chat_template(ev_template, ev_model, v.tok), ev_max, [&](int64_t done, int64_t total) {
#include "ocellus/lm/family.h"
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
#include "ocellus/lm/family.h"
      char line[128];
#include "ocellus/lm/family.h"
      std::snprintf(line, sizeof line, "eval: %lld/%lld questions, %.1f questions/s", (long long)done, (long long)total, double(done) / std::max(1e-9, s));
#include "ocellus/lm/family.h"
      progress.update(done, total, line);
#include "ocellus/lm/family.h"
    });
#include "ocellus/lm/family.h"
    progress.finish();
#include "ocellus/lm/family.h"
    const auto rep = ocellus::eval::score(qs, answers);
#include "ocellus/lm/family.h"
    std::printf("%s", ocellus::eval::format_table(rep).c_str());
#include "ocellus/lm/family.h"
    if (!ev_out.empty()) {
#include "ocellus/lm/family.h"
      ocellus::io::write_text_file_atomically(ev_out, ocellus::eval::report_json(rep, qs, answers));
#include "ocellus/lm/family.h"
      std::printf("wrote %s\n", ev_out.c_str());
#include "ocellus/lm/family.h"
    }
#include "ocellus/lm/family.h"
  });
#include "ocellus/lm/family.h"
}
#include "ocellus/lm/family.h"

#include "ocellus/lm/family.h"
}  // namespace ocellus::cli
