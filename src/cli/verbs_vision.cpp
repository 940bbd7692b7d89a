// The `ocellus` verbs embed, run and chat: images through a VLM.
// Each add_* registers one verb; its option values are static: they live as long as the
// App that parses into them (one per process).
#include "cli.h"

namespace ocellus::cli {

void add_embed(CLI::App& app) {
  auto* em = app.add_subcommand("embed", "Write an image's connector output rows ([n_img_tok, n_embd] float32, raw little-endian)");
  static std::string em_mmproj, em_image, em_pixels, em_out;
  em->add_option("--mmproj", em_mmproj, "Vision projector (mmproj GGUF)")->required();
  em->add_option("--image", em_image, "Image file (PNG / JPEG)");
  em->add_option("--pixels", em_pixels, "A preprocessed float32 HWC image of the tower's size, instead of --image");
  em->add_option("-o,--output", em_out, "Output file")->required();
  em->callback([=] {
    if (em_image.empty() == em_pixels.empty()) throw std::runtime_error("give exactly one of --image and --pixels");
    const auto vm = ocellus::model::load_mmproj(em_mmproj);
    double ms = 0;
    const auto rows = encode_images(*vm, em_image.empty() ? std::vector<std::string>{} : std::vector<std::string>{em_image},
                                    em_pixels, &ms);
    write_f32(em_out, rows[0]);
    std::printf("wrote %s: [%lld, %lld] float32\n", em_out.c_str(), (long long)rows[0].dim(0), (long long)rows[0].dim(1));
  });
}

void add_run(CLI::App& app) {
  auto* run = app.add_subcommand("run", "Answer a prompt about images with a VLM (text model + mmproj, or a Hugging Face folder)");
  static VlmOptions ro;
  static std::string run_prompt;
  ro.add(run, "Tokens to generate at most", "Image file (PNG / JPEG; repeatable)")->required();
  run->add_option("-p,--prompt", run_prompt, "The question; images go before it unless it holds <image> placeholders")->required();
  run->callback([=] {
    require_text(run_prompt, "the prompt (-p)");
    const auto t0 = std::chrono::steady_clock::now();
    const ocellus::model::Vlm v = ro.load();
    const double load_ms = ms_since(t0);
    const bool placed = run_prompt.find("<image>") != std::string::npos;
    const std::string user = placed ? run_prompt : ocellus::model::image_placeholders(ro.images.size()) + run_prompt;
    const auto t = ocellus::lm::resolve_chat_template(ro.chat_template, v.text_file, v.tok);
    // The prompt checked before any image is encoded.
    const auto plan = ocellus::model::plan_answer(v, t, {{"user", user}}, ro.images.size(), ro.gen);
    double ms = 0;
    const auto rows = encode_images(*v.vision, ro.images, "", &ms);
    const auto r = ocellus::model::answer(v, plan, rows, ro.gen, print_piece);
    std::printf("\n");
    print_stats(r, load_ms, ms);
  });
}

void add_chat(CLI::App& app) {
  auto* chat = app.add_subcommand("chat", "Talk with a VLM (text model + mmproj, or a Hugging Face folder); /image PATH attaches a picture");
  static VlmOptions co;
  co.add(chat, "Tokens per reply at most", "Image attached to the first message (repeatable)");
  chat->callback([=] {
    const ocellus::model::Vlm v = co.load();
    const ocellus::text::ChatTemplate t = ocellus::lm::resolve_chat_template(co.chat_template, v.text_file, v.tok);
    std::vector<ocellus::text::Message> history;
    std::vector<ocellus::Tensor> rows;  // every image of the conversation, in order
    size_t pending = 0;                 // images attached since the last message
    auto attach = [&](const std::string& path) {
      try {
        double ms = 0;
        rows.push_back(encode_images(*v.vision, {path}, "", &ms)[0]);
        ++pending;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "\nocellus: error: %s (the conversation goes on)\n", e.what());
      }
    };
    for (const std::string& img : co.images) attach(img);
    std::fprintf(stderr, "chat: type a message; /image PATH attaches an image, /reset forgets the conversation, /quit or Ctrl-D ends\n");
    std::string line;
    while (true) {
      std::printf("> ");
      std::fflush(stdout);
      if (!std::getline(std::cin, line)) break;
      if (line == "/quit" || line == "/exit") break;
      if (line == "/reset") {
        history.clear(), rows.clear(), pending = 0;
        continue;
      }
      if (line.rfind("/image ", 0) == 0) {
        attach(line.substr(7));
        continue;
      }
      if (line.empty()) continue;
      const size_t n_new = pending;
      history.push_back({"user", ocellus::model::image_placeholders(n_new) + line});
      pending = 0;
      try {
        // The whole conversation is rendered and prefilled again each turn (images included).
        const auto r = ocellus::model::answer(v, t, history, rows, co.gen, print_piece);
        std::printf("\n");
        std::fprintf(stderr, "[prefill %lld tokens %.1f tokens/s; decode %zu tokens %.1f tokens/s; stop: %s]\n",
                     (long long)r.n_prompt, double(r.n_prompt) / r.prefill_seconds, r.tokens.size(),
                     r.tokens.empty() ? 0.0 : double(r.tokens.size()) / r.decode_seconds, r.stop_reason.c_str());
        history.push_back({"assistant", r.text});
      } catch (const std::exception& e) {  // e.g. the conversation outgrew the context
        history.pop_back();
        pending = n_new;  // its images wait for the next message
        std::fprintf(stderr, "ocellus: error: %s (message dropped; /reset starts over)\n", e.what());
      }
    }
    std::printf("\n");
  });
}

}  // namespace ocellus::cli
