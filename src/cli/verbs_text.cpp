// The `ocellus` verbs tokenize, train-tokenizer, generate and logits: text models and vocabularies.
// Each add_* registers one verb; its option values are static: they live as long as the
// App that parses into them (one per process).
#include "cli.h"

namespace ocellus::cli {

void add_tokenize(CLI::App& app) {
  auto* tokenize = app.add_subcommand("tokenize", "Tokenize text with a model's vocabulary; print ids and pieces");
  static std::string tok_model, tok_text, tok_file;
  static bool tok_ids = false, tok_bos = false, tok_special = false;
  tokenize->add_option("-m,--model", tok_model, "Model GGUF or vocabulary-only GGUF")->required();
  tokenize->add_option("text", tok_text, "Text to tokenize");
  tokenize->add_option("--file", tok_file, "Tokenize this file's text instead");
  tokenize->add_flag("--ids", tok_ids, "Print only the ids, separated by spaces");
  tokenize->add_flag("--bos", tok_bos, "Add BOS / EOS as the vocabulary says (off by default)");
  tokenize->add_flag("--special", tok_special, "Parse special tokens written in the text (<s>, <|im_start|>, ...)");
  tokenize->callback([=] {
    if (!tok_file.empty()) tok_text = ocellus::io::read_text_file(tok_file);
    else if (tok_text.empty() && !tokenize->count("text")) throw CLI::RequiredError("text or --file");
    const auto tok = ocellus::text::Tokenizer::from_file(tok_model);
    const std::vector<int32_t> ids = tok.encode(tok_text, tok_bos, tok_special);
    if (tok_ids) {
      for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", ids[i]);
      std::printf("\n");
      return;
    }
    for (int32_t id : ids) {
      std::string p = tok.piece(id, false), shown;
      for (unsigned char c : p) {  // control bytes visible
        if (c == '\n') shown += "\\n";
        else if (c == '\t') shown += "\\t";
        else if (c < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\x%02x", c); shown += b; }
        else shown += char(c);
      }
      std::printf("%8d  '%s'\n", id, shown.c_str());
    }
    std::fprintf(stderr, "%zu tokens (%s, %d in vocabulary)\n", ids.size(), tok.kind_name(), tok.n_vocab());
  });
}

void add_train_tokenizer(CLI::App& app) {
  auto* trainer = app.add_subcommand("train-tokenizer", "Learn a byte-level BPE vocabulary from text files; "
                                                      "write tokenizer.json (+ tokenizer_config.json)");
  static std::vector<std::string> bpe_files;
  static std::string bpe_out, bpe_pre = "gpt-2";
  static ocellus::text::BpeTrainOptions bpe_opt;
  bpe_opt.specials = {"<|endoftext|>"};
  bpe_opt.eos = "<|endoftext|>";
  trainer->add_option("files", bpe_files, "Text files (UTF-8)")->required();
  trainer->add_option("-o,--output", bpe_out, "Output tokenizer.json")->required();
  trainer->add_option("--vocab-size", bpe_opt.vocab_size, "Tokens in all: specials + 256 bytes + merges")->capture_default_str()
      ->check(CLI::Range(257, 1 << 24));
  trainer->add_option("--special", bpe_opt.specials, "Special tokens, in id order")->capture_default_str();
  trainer->add_option("--bos", bpe_opt.bos, "The special token that begins a sequence (none by default)");
  trainer->add_option("--eos", bpe_opt.eos, "The special token that ends a sequence")->capture_default_str();
  trainer->add_option("--pre", bpe_pre, "Pre-tokenizer: gpt-2, llama3, qwen2")->capture_default_str();
  trainer->add_option("--min-frequency", bpe_opt.min_frequency, "Stop when no pair occurs this often")->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  trainer->callback([=] {
    bpe_opt.pre = ocellus::text::pretokenizer_from_name(bpe_pre);
    std::vector<std::string> texts;
    size_t bytes = 0;
    for (const std::string& f : bpe_files) {
      texts.push_back(ocellus::io::read_text_file(f, size_t(4) << 30));
      bytes += texts.back().size();
    }
    ocellus::ProgressLine progress;
    bpe_opt.progress = [&](int64_t done, int64_t total) {
      progress.update(done, total, "merges " + std::to_string(done) + " / " + std::to_string(total));
    };
    const auto tok = ocellus::text::train_bpe(texts, bpe_opt);
    progress.finish();
    const std::filesystem::path parent = std::filesystem::path(bpe_out).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    tok.save_hf_json(bpe_out);
    std::printf("wrote %s: %d tokens learned from %zu bytes of text\n", bpe_out.c_str(), tok.n_vocab(), bytes);
  });
}

void add_generate(CLI::App& app) {
  auto* gen = app.add_subcommand("generate", "Generate text from a prompt with a text model (GGUF file or Hugging Face folder)");
  static std::string gen_model, gen_prompt;
  static ocellus::lm::GenerateParams gp;
  const std::string families = ocellus::join(ocellus::lm::known_architectures());  // the registered text families (lm/family.h)
  gen->add_option("-m,--model", gen_model, "Text model: GGUF file or Hugging Face folder (" + families + ")")->required();
  gen->add_option("-p,--prompt", gen_prompt, "Prompt text")->required();
  gen->add_option("-n,--n-predict", gp.n_predict, "Tokens to generate at most")->capture_default_str()->check(kTokens);
  gen->add_option("-c,--ctx", gp.n_ctx, "Context size in tokens (default: the model's, at most 4096)")->check(kContext);
  gen->add_option("--temp", gp.sampling.temperature, "Temperature; 0 = greedy")->capture_default_str()->check(kTemperature);
  gen->add_option("--top-k", gp.sampling.top_k, "Top-k (0 = off)")->capture_default_str()->check(CLI::Range(0, 1 << 30));
  gen->add_option("--top-p", gp.sampling.top_p, "Top-p (1 = off)")->capture_default_str()->check(kProbability);
  gen->add_option("--min-p", gp.sampling.min_p, "Min-p (0 = off)")->capture_default_str()->check(kProbability);
  gen->add_option("--repeat-penalty", gp.sampling.repeat_penalty, "Repetition penalty (1 = off)")->capture_default_str()
      ->check(CLI::Range(0.01, 100.0));
  gen->add_option("--repeat-last-n", gp.sampling.repeat_last_n, "Tokens the penalty looks back over")->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  gen->add_option("--seed", gp.sampling.seed, "Random seed")->capture_default_str()->check(kSeed);
  gen->add_option("--stop", gp.stop, "Stop string (repeatable)")
      ->check(CLI::Validator([](std::string& v) { return v.empty() ? std::string("a stop string cannot be empty") : std::string(); }, "TEXT"));
  gen->callback([=] {
    require_text(gen_prompt, "the prompt (-p)");
    const auto t0 = std::chrono::steady_clock::now();
    const auto model = ocellus::lm::load_model(gen_model);  // GGUF file or Hugging Face folder
    const auto tok = ocellus::text::Tokenizer::from_file(gen_model);
    const double load_ms = ms_since(t0);
    const std::vector<int32_t> prompt = tok.encode(gen_prompt, true, false);
    std::printf("%s", gen_prompt.c_str());
    std::fflush(stdout);
    const auto r = ocellus::lm::generate(*model, tok, prompt, gp, print_piece);
    std::printf("\n");
    std::fflush(stdout);
    print_stats(r, load_ms);
  });
}

void add_logits(CLI::App& app) {
  auto* lg = app.add_subcommand("logits", "Write the f32 logits of every prompt position ([n_tokens, n_vocab], raw little-endian)");
  static std::string lg_model, lg_prompt, lg_ids, lg_out;
  lg->add_option("-m,--model", lg_model, "Text model: GGUF file or Hugging Face folder")->required();
  lg->add_option("-p,--prompt", lg_prompt, "Prompt text (tokenized with the model's vocabulary, BOS as it says)");
  lg->add_option("--ids", lg_ids, "int32 token ids (raw little-endian) instead of text");
  lg->add_option("-o,--output", lg_out, "Output file")->required();
  static std::string lg_mmproj, lg_pixels;
  static std::vector<std::string> lg_images;
  static bool lg_last = false;
  lg->add_option("--mmproj", lg_mmproj, "Vision projector (mmproj GGUF; a Hugging Face LLaVA folder has its own): "
                 "the prompt's <image> placeholders take the images' rows")
      ->excludes("--ids");
  lg->add_option("--image", lg_images, "Image file (PNG / JPEG; repeatable, in placeholder order)")->excludes("--ids");
  lg->add_option("--pixels", lg_pixels, "A preprocessed float32 HWC image of the tower's size, instead of an image file")->excludes("--ids");
  lg->add_flag("--last", lg_last, "Write only the last position's logits ([1, n_vocab])");
  lg->callback([=] {
    ocellus::Tensor logits;
    if (!lg_mmproj.empty() || !lg_images.empty() || !lg_pixels.empty()) {
      if (!lg->count("--prompt")) throw CLI::RequiredError("--prompt (with <image> placeholders) for images");
      const ocellus::model::Vlm v = ocellus::model::load_vlm(lg_model, lg_mmproj);  // a GGUF pair or a folder
      const auto plan = ocellus::model::plan_splice(v.tok, lg_prompt, lg_images.size() + !lg_pixels.empty(), v.tok.add_bos(), "<image>",
                                                    v.vision->markers());  // checked before any image is encoded
      double ms = 0;
      const auto rows = encode_images(*v.vision, lg_images, lg_pixels, &ms);
      const auto sp = ocellus::model::splice_prompt(*v.lm, plan, rows);
      ocellus::lm::KvCache cache(v.lm->config(), sp.embeddings.dim(0));
      logits = v.lm->forward(sp.embeddings, cache, !lg_last);
    } else {
      const auto model = ocellus::lm::load_model(lg_model);  // GGUF file or Hugging Face folder
      std::vector<int32_t> ids;
      if (!lg_ids.empty()) ids = read_raw<int32_t>(lg_ids, "int32 ids");
      else if (lg->count("--prompt")) ids = ocellus::text::Tokenizer::from_file(lg_model).encode(lg_prompt, true, false);
      else throw CLI::RequiredError("--prompt or --ids");
      if (ids.empty()) throw std::runtime_error("no tokens to run");
      ocellus::lm::KvCache cache(model->config(), int64_t(ids.size()));
      logits = model->forward_ids(ids, cache, !lg_last);
    }
    write_f32(lg_out, logits);
    std::printf("wrote %s: [%lld, %lld] float32\n", lg_out.c_str(), (long long)logits.dim(0), (long long)logits.dim(1));
  });
}

}  // namespace ocellus::cli
