// The `ocellus` verbs eval: scoring a VLM on an evaluation file.
// Each add_* registers one verb; its option values are static: they live as long as the
// App that parses into them (one per process).
#include "cli.h"

namespace ocellus::cli {

void add_eval(CLI::App& app) {
  auto* ev = app.add_subcommand("eval", "Answer an evaluation file's questions greedily and score them (per category, POPE yes/no, "
                                "multiple choice)");
  static std::string ev_model, ev_mmproj, ev_questions, ev_images, ev_out, ev_template;
  static int32_t ev_max = 16;
  static int64_t ev_limit = 0;
  ev->add_option("-m,--model", ev_model, "Text model GGUF (with --mmproj) or a Hugging Face LLaVA-style folder")->required();
  ev->add_option("--mmproj", ev_mmproj, "Vision projector (mmproj GGUF)");
  ev->add_option("--questions", ev_questions, "Evaluation JSON: [{question_id, image, question, answer, category, choices?}]")->required();
  ev->add_option("--images", ev_images, "Folder the image paths are relative to");
  ev->add_option("-o,--output", ev_out, "Write the report and every answer as JSON");
  ev->add_option("--max-tokens", ev_max, "Tokens per answer at most")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  ev->add_option("--limit", ev_limit, "Only the first N questions (0: all)")->check(kCount);
  ev->add_option("--chat-template", ev_template, "llama2, llama3, vicuna, chatml, phi2 (default: from the model)");
  ev->callback([=] {
    auto qs = ocellus::eval::read_questions(ev_questions);
    if (ev_limit > 0 && int64_t(qs.size()) > ev_limit) qs.resize(size_t(ev_limit));
    const ocellus::model::Vlm v = ocellus::model::load_vlm(ev_model, ev_mmproj);
    const auto t0 = std::chrono::steady_clock::now();
    ocellus::ProgressLine progress;
    const auto answers = ocellus::eval::answer_all(v, qs, ev_images, ocellus::lm::resolve_chat_template(ev_template, v.text_file, v.tok), ev_max, [&](int64_t done, int64_t total) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      char line[128];
      std::snprintf(line, sizeof line, "eval: %lld/%lld questions, %.1f questions/s", (long long)done, (long long)total, double(done) / std::max(1e-9, s));
      progress.update(done, total, line);
    });
    progress.finish();
    const auto rep = ocellus::eval::score(qs, answers);
    std::printf("%s", ocellus::eval::format_table(rep).c_str());
    if (!ev_out.empty()) {
      ocellus::io::write_text_file_atomically(ev_out, ocellus::eval::report_json(rep, qs, answers));
      std::printf("wrote %s\n", ev_out.c_str());
    }
  });
}

}  // namespace ocellus::cli
