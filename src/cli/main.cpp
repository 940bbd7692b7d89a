// The `ocellus` command: thin; every verb calls a library function.
#include <cstdio>
#include <filesystem>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <exception>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include <chrono>
#include <iostream>

#include "ocellus/core/cpu.h"
#include "ocellus/core/error.h"
#include "ocellus/core/progress.h"
#include "ocellus/eval/eval.h"
#include "ocellus/core/threads.h"
#include "ocellus/io/inspect.h"
#include "ocellus/io/file.h"
#include "ocellus/io/gguf.h"
#include "ocellus/lm/generate.h"
#include "ocellus/model/init.h"
#include "ocellus/model/synth.h"
#include "ocellus/model/vlm.h"
#include "ocellus/text/chat.h"
#include "ocellus/vision/preprocess.h"
#include "ocellus/text/bpe_train.h"
#include "ocellus/text/tokenizer.h"
#include "ocellus/train/data.h"
#include "ocellus/train/dist.h"
#include "ocellus/train/fashion_vqa.h"
#include "ocellus/train/feature_cache.h"
#include "ocellus/train/trainer.h"

namespace {

// A file of raw little-endian values (token ids, pixels), checked to hold whole values.
template <typename T>
std::vector<T> read_raw(const std::string& path, const char* what) {
  const std::string b = ocellus::io::read_text_file(path);
  if (b.size() % sizeof(T) != 0) throw std::runtime_error(path + ": size is not a whole number of " + what);
  std::vector<T> v(b.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), b.data(), b.size());
  return v;
}

// An image file, or a preprocessed float32 HWC image of the tower's size (--pixels), as the
// tower's [3, S, S] input.
ocellus::Tensor image_input(const ocellus::model::VisionModel& vm, const std::string& image, const std::string& pixels) {
  const int64_t S = vm.config().image_size;
  if (!pixels.empty()) {
    const std::vector<float> v = read_raw<float>(pixels, "float32 values");
    if (v.size() != size_t(S * S * 3))
      throw std::runtime_error(pixels + ": " + std::to_string(v.size() * 4) + " bytes, expected a float32 " + std::to_string(S) +
                               "x" + std::to_string(S) + "x3 HWC image (" + std::to_string(S * S * 3 * 4) + " bytes)");
    return ocellus::vision::hwc_to_chw(ocellus::Tensor::from_vector({S, S, 3}, v));
  }
  return ocellus::vision::preprocess(ocellus::io::load_image(image), vm.config().preprocess);
}

// Image rows for each input, with a progress line and the encode time on stderr.
std::vector<ocellus::Tensor> encode_images(const ocellus::model::VisionModel& vm, const std::vector<std::string>& images,
                                           const std::string& pixels, double* ms) {
  std::vector<ocellus::Tensor> in;
  if (!pixels.empty()) in.push_back(image_input(vm, "", pixels));
  for (const std::string& img : images) in.push_back(image_input(vm, img, ""));
  std::fprintf(stderr, "encoding %zu image(s) (%lld tokens each)...", in.size(), (long long)vm.n_tokens_per_image());
  std::fflush(stderr);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<ocellus::Tensor> rows = vm.embed(in);
  *ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, " %.1f ms\n", *ms);
  return rows;
}

// Value checks shared by the verbs; CLI11 names the option and the valid range when one fails.
// Seeds are unsigned: CLI11 alone would wrap -1 around to 2^64 - 1.
const CLI::Validator kSeed([](std::string& v) { return !v.empty() && v[0] == '-' ? std::string("a seed is a whole number >= 0") : std::string(); },
                           "SEED");
const CLI::Range kTokens(0, 1 << 20);                 // -n: tokens to generate
const CLI::Range kContext(1, 1 << 20);                // -c: context size
const CLI::Range kTemperature(0.0, 100.0);            // --temp (0: greedy)
const CLI::Range kProbability(0.0, 1.0);              // --top-p, --min-p
const CLI::Range kCount(int64_t(0), int64_t(1) << 40);  // a count that may be 0 (--limit)

void require_text(const std::string& text, const char* what) {
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) throw std::runtime_error(std::string(what) + " is empty");
}

void write_f32(const std::string& path, const ocellus::Tensor& t) {
  const ocellus::Tensor c = t.contiguous();
  ocellus::io::write_file_atomically(path, [&](std::FILE* f) { ocellus::io::write_bytes(f, c.raw(), c.nbytes(), path); });
}

// Streams generated text to stdout as it comes.
void print_piece(const std::string& piece) {
  std::printf("%s", piece.c_str());
  std::fflush(stdout);
}

// The options `run` and `chat` share, and what they load from them.
struct VlmOptions {
  std::string model, mmproj, chat_template;
  std::vector<std::string> images;
  ocellus::lm::GenerateParams gen;
  CLI::Option* add(CLI::App* cmd, const char* n_help, const char* image_help) {
    gen.sampling.temperature = 0;  // greedy unless asked
    cmd->add_option("-m,--model", model, "Text model GGUF (with --mmproj), or a Hugging Face LLaVA-style folder "
                                         "(default: the bundled models/fashion-vlm)");
    cmd->add_option("--mmproj", mmproj, "Vision projector (mmproj GGUF); not needed for a Hugging Face folder");
    CLI::Option* img = cmd->add_option("--image", images, image_help);
    cmd->add_option("--chat-template", chat_template, "llama2, llama3, vicuna, chatml, phi2 (default: from the model)");
    cmd->add_option("-n,--n-predict", gen.n_predict, n_help)->capture_default_str()->check(kTokens);
    cmd->add_option("-c,--ctx", gen.n_ctx, "Context size in tokens (default: the model's, at most 4096)")->check(kContext);
    cmd->add_option("--temp", gen.sampling.temperature, "Temperature; 0 = greedy")->capture_default_str()->check(kTemperature);
    cmd->add_option("--seed", gen.sampling.seed, "Random seed")->capture_default_str()->check(kSeed);
    return img;
  }
  ocellus::text::ChatTemplate resolve_template(const ocellus::text::Tokenizer& tok) const {
    return ocellus::text::resolve_chat_template(chat_template, model, tok);
  }
  ocellus::model::Vlm load() {
    if (model.empty()) {
      OCELLUS_CHECK(mmproj.empty(), "--mmproj given without -m");
      const std::string dir = bundled_model_dir();
      model = dir + "/model.gguf", mmproj = dir + "/mmproj.gguf";
    }
    return ocellus::model::load_vlm(model, mmproj);
  }
  // The model that ships with ocellus: $OCELLUS_DEFAULT_MODEL when set (the only place looked
  // at), else the first of: an installed copy (PREFIX/share/ocellus/models beside PREFIX/bin),
  // models/ beside the build folder of this executable or in it, the source tree's models/ (its
  // path compiled in, so a build folder anywhere finds it), ./models.
  static std::string bundled_model_dir() {
    std::vector<std::filesystem::path> tried;
    if (const char* env = std::getenv("OCELLUS_DEFAULT_MODEL")) {
      tried.push_back(env);
    } else {
      std::error_code ec;
      const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
      if (!ec) {
        const std::filesystem::path bin = exe.parent_path();
        tried.push_back(bin.parent_path() / "share/ocellus/models/fashion-vlm");
        tried.push_back(bin.parent_path() / "models/fashion-vlm"), tried.push_back(bin / "models/fashion-vlm");
      }
      tried.push_back(std::filesystem::path(OCELLUS_SOURCE_MODELS) / "fashion-vlm");
      tried.push_back("models/fashion-vlm");
    }
    std::string list;
    for (const auto& d : tried) {
      if (std::filesystem::is_regular_file(d / "model.gguf") && std::filesystem::is_regular_file(d / "mmproj.gguf")) return d.string();
      list += (list.empty() ? "" : ", ") + d.string();
    }
    ocellus::fail("no -m given and no bundled model (model.gguf + mmproj.gguf) in ", list);
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ocellus: build, train and run small vision-language models"};
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("-t,--threads", threads, "Worker threads (default: OCELLUS_THREADS or all cores)")->check(CLI::Range(0, 4096));

  auto* info = app.add_subcommand("info", "Show the CPU features and the kernels ocellus picked");
  info->callback([&] {
    ocellus::set_num_threads(threads);
    std::printf("ocellus 0.1.0\n");
    std::printf("cpu features : %s\n", ocellus::cpu_features().str().c_str());
    std::printf("kernels      : %s\n", ocellus::isa_name(ocellus::active_isa()));
    const char* coretype = std::getenv("OPENBLAS_CORETYPE");
    const std::string core = ocellus::blas_core();
    std::printf("openblas core: %s%s%s%s\n", core.c_str(), coretype ? " (OPENBLAS_CORETYPE=" : "",
                coretype ? coretype : "", coretype ? ")" : "");
    std::printf("threads      : %d\n", ocellus::num_threads());
    try {
      std::printf("bundled model: %s\n", VlmOptions::bundled_model_dir().c_str());
    } catch (const std::exception& e) {
      std::printf("bundled model: none (%s)\n", e.what());
    }
  });

  auto* inspect = app.add_subcommand("inspect", "Summarize model files: GGUF (text model or mmproj), "
                                                "a .safetensors file, or a Hugging Face folder");
  std::vector<std::string> inspect_paths;
  ocellus::io::InspectOptions inspect_opt;
  inspect->add_option("files", inspect_paths, "Model files or folders")->required();
  inspect->add_flag("--tensors", inspect_opt.tensors, "List every tensor (name, dtype, shape, bytes, offset)");
  inspect->add_flag("--metadata", inspect_opt.metadata, "List every metadata key with its value");
  int inspect_failures = 0;
  inspect->callback([&] {
    for (size_t i = 0; i < inspect_paths.size(); ++i) {
      try {
        std::printf("%s%s", i ? "\n" : "", ocellus::io::inspect_model_file(inspect_paths[i], inspect_opt).c_str());
      } catch (const std::exception& e) {  // report and go on with the other files
        std::fprintf(stderr, "ocellus: error: %s\n", e.what());
        ++inspect_failures;
      }
    }
  });

  auto* synth = app.add_subcommand("synth", "Write a random-weight model of a named real shape as GGUF");
  std::string synth_shape, synth_out, synth_dtype = "f16";
  ocellus::model::SynthOptions synth_opt;
  bool synth_list = false;
  synth->add_option("shape", synth_shape, "Shape name (see --list)");
  synth->add_option("-o,--output", synth_out, "Output .gguf file");
  synth->add_option("--dtype", synth_dtype, "Weight matrices: f32, f16, bf16, q8_0, q4_0")->capture_default_str();
  synth->add_option("--layers", synth_opt.layers, "Number of blocks (default: the shape's own)")->check(CLI::Range(1, 10000));
  synth->add_option("--seed", synth_opt.seed, "Random seed")->capture_default_str()->check(kSeed);
  synth->add_flag("--list", synth_list, "List the known shapes");
  synth->callback([&] {
    if (synth_list || synth_shape.empty()) {
      for (const auto& s : ocellus::model::synth_shapes())
        std::printf("%-22s %s %s\n", s.name.c_str(), s.vision ? "mmproj" : "text  ", s.description.c_str());
      if (!synth_list) throw CLI::ValidationError("shape", "give a shape name (listed above)");
      return;
    }
    if (synth_out.empty()) throw CLI::RequiredError("--output");
    ocellus::set_num_threads(threads);
    synth_opt.dtype = ocellus::dtype_from_name(synth_dtype);
    const auto& shape = ocellus::model::synth_shape(synth_shape);
    const uint64_t bytes = ocellus::model::write_synth_model(shape, synth_opt, synth_out);
    std::printf("wrote %s: %s (%s), %s weights, %s of tensor data\n", synth_out.c_str(), shape.name.c_str(),
                shape.description.c_str(), synth_dtype.c_str(), ocellus::io::human_bytes(bytes).c_str());
  });

  auto* tokenize = app.add_subcommand("tokenize", "Tokenize text with a model's vocabulary; print ids and pieces");
  std::string tok_model, tok_text, tok_file;
  bool tok_ids = false, tok_bos = false, tok_special = false;
  tokenize->add_option("-m,--model", tok_model, "Model GGUF or vocabulary-only GGUF")->required();
  tokenize->add_option("text", tok_text, "Text to tokenize");
  tokenize->add_option("--file", tok_file, "Tokenize this file's text instead");
  tokenize->add_flag("--ids", tok_ids, "Print only the ids, separated by spaces");
  tokenize->add_flag("--bos", tok_bos, "Add BOS / EOS as the vocabulary says (off by default)");
  tokenize->add_flag("--special", tok_special, "Parse special tokens written in the text (<s>, <|im_start|>, ...)");
  tokenize->callback([&] {
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

  auto* trainer = app.add_subcommand("train-tokenizer", "Learn a byte-level BPE vocabulary from text files; "
                                                      "write tokenizer.json (+ tokenizer_config.json)");
  std::vector<std::string> bpe_files;
  std::string bpe_out, bpe_pre = "gpt-2";
  ocellus::text::BpeTrainOptions bpe_opt;
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
  trainer->callback([&] {
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

  auto* gen = app.add_subcommand("generate", "Generate text from a prompt with a text model (GGUF file or Hugging Face folder)");
  std::string gen_model, gen_prompt;
  ocellus::lm::GenerateParams gp;
  gen->add_option("-m,--model", gen_model, "Text model: GGUF file or Hugging Face folder (llama, qwen2, phi2, stablelm)")->required();
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
  gen->add_option("--stop", gp.stop, "Stop string (repeatable)");
  gen->callback([&] {
    require_text(gen_prompt, "the prompt (-p)");
    ocellus::set_num_threads(threads);
    const auto model = ocellus::lm::load_model(gen_model);  // GGUF file or Hugging Face folder
    const auto tok = ocellus::text::Tokenizer::from_file(gen_model);
    const std::vector<int32_t> prompt = tok.encode(gen_prompt, true, false);
    std::printf("%s", gen_prompt.c_str());
    std::fflush(stdout);
    const auto r = ocellus::lm::generate(*model, tok, prompt, gp, print_piece);
    std::printf("\n");
    std::fflush(stdout);
    std::fprintf(stderr, "prefill: %lld tokens in %.1f ms (%.1f tokens/s); decode: %zu tokens in %.1f ms (%.1f tokens/s); stop: %s\n",
                 (long long)r.n_prompt, r.prefill_seconds * 1e3, double(r.n_prompt) / r.prefill_seconds, r.tokens.size(),
                 r.decode_seconds * 1e3, r.tokens.empty() ? 0.0 : double(r.tokens.size()) / r.decode_seconds, r.stop_reason.c_str());
  });

  auto* lg = app.add_subcommand("logits", "Write the f32 logits of every prompt position ([n_tokens, n_vocab], raw little-endian)");
  std::string lg_model, lg_prompt, lg_ids, lg_out;
  lg->add_option("-m,--model", lg_model, "Text model: GGUF file or Hugging Face folder")->required();
  lg->add_option("-p,--prompt", lg_prompt, "Prompt text (tokenized with the model's vocabulary, BOS as it says)");
  lg->add_option("--ids", lg_ids, "int32 token ids (raw little-endian) instead of text");
  lg->add_option("-o,--output", lg_out, "Output file")->required();
  std::string lg_mmproj, lg_pixels;
  std::vector<std::string> lg_images;
  bool lg_last = false;
  lg->add_option("--mmproj", lg_mmproj, "Vision projector (mmproj GGUF; a Hugging Face LLaVA folder has its own): "
                 "the prompt's <image> placeholders take the images' rows")
      ->excludes("--ids");
  lg->add_option("--image", lg_images, "Image file (PNG / JPEG; repeatable, in placeholder order)")->excludes("--ids");
  lg->add_option("--pixels", lg_pixels, "A preprocessed float32 HWC image of the tower's size, instead of an image file")->excludes("--ids");
  lg->add_flag("--last", lg_last, "Write only the last position's logits ([1, n_vocab])");
  lg->callback([&] {
    ocellus::set_num_threads(threads);
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

  auto* em = app.add_subcommand("embed", "Write an image's connector output rows ([n_img_tok, n_embd] float32, raw little-endian)");
  std::string em_mmproj, em_image, em_pixels, em_out;
  em->add_option("--mmproj", em_mmproj, "Vision projector (mmproj GGUF)")->required();
  em->add_option("--image", em_image, "Image file (PNG / JPEG)");
  em->add_option("--pixels", em_pixels, "A preprocessed float32 HWC image of the tower's size, instead of --image");
  em->add_option("-o,--output", em_out, "Output file")->required();
  em->callback([&] {
    ocellus::set_num_threads(threads);
    if (em_image.empty() == em_pixels.empty()) throw std::runtime_error("give exactly one of --image and --pixels");
    const auto vm = ocellus::model::load_mmproj(em_mmproj);
    double ms = 0;
    const auto rows = encode_images(*vm, em_image.empty() ? std::vector<std::string>{} : std::vector<std::string>{em_image},
                                    em_pixels, &ms);
    write_f32(em_out, rows[0]);
    std::printf("wrote %s: [%lld, %lld] float32\n", em_out.c_str(), (long long)rows[0].dim(0), (long long)rows[0].dim(1));
  });

  auto* run = app.add_subcommand("run", "Answer a prompt about images with a VLM (text model + mmproj, or a Hugging Face folder)");
  VlmOptions ro;
  std::string run_prompt;
  ro.add(run, "Tokens to generate at most", "Image file (PNG / JPEG; repeatable)")->required();
  run->add_option("-p,--prompt", run_prompt, "The question; images go before it unless it holds <image> placeholders")->required();
  run->callback([&] {
    require_text(run_prompt, "the prompt (-p)");
    ocellus::set_num_threads(threads);
    const ocellus::model::Vlm v = ro.load();
    std::string user = run_prompt;
    if (user.find("<image>") == std::string::npos) {
      std::string marks;
      for (size_t i = 0; i < ro.images.size(); ++i) marks += "<image>\n";
      user = marks + user;
    }
    const ocellus::text::ChatTemplate t = ro.resolve_template(v.tok);
    const std::string text = ocellus::text::render_chat_text(t, {{"user", user}}, true);
    // The prompt checked before any image is encoded: placeholders against images, length against the context.
    const auto plan = ocellus::model::plan_splice(v.tok, text, ro.images.size(), v.tok.add_bos() && ocellus::text::bos_from_tokenizer(t),
                                                  "<image>", v.vision->markers());
    ocellus::lm::check_prompt_fits(plan.n_tokens(v.vision->n_tokens_per_image()), ocellus::lm::context_size(ro.gen, v.lm->config()));
    double ms = 0;
    const auto rows = encode_images(*v.vision, ro.images, "", &ms);
    const auto sp = ocellus::model::splice_prompt(*v.lm, plan, rows);
    const auto r = ocellus::lm::generate_embedded(*v.lm, v.tok, sp.embeddings, sp.ids, ro.gen, print_piece);
    std::printf("\n");
    std::fprintf(stderr, "image encode: %.1f ms; prefill: %lld tokens in %.1f ms (%.1f tokens/s); decode: %zu tokens in %.1f ms (%.1f tokens/s); stop: %s\n",
                 ms, (long long)r.n_prompt, r.prefill_seconds * 1e3, double(r.n_prompt) / r.prefill_seconds, r.tokens.size(),
                 r.decode_seconds * 1e3, r.tokens.empty() ? 0.0 : double(r.tokens.size()) / r.decode_seconds, r.stop_reason.c_str());
  });

  auto* chat = app.add_subcommand("chat", "Talk with a VLM (text model + mmproj, or a Hugging Face folder); /image PATH attaches a picture");
  VlmOptions co;
  co.add(chat, "Tokens per reply at most", "Image attached to the first message (repeatable)");
  chat->callback([&] {
    ocellus::set_num_threads(threads);
    const ocellus::model::Vlm v = co.load();
    const ocellus::text::ChatTemplate t = co.resolve_template(v.tok);
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
      std::string user;
      for (; pending > 0; --pending) user += "<image>\n";
      history.push_back({"user", user + line});
      try {
        // The whole conversation is rendered and prefilled again each turn (images included).
        const std::string text = ocellus::text::render_chat_text(t, history, true);
        const auto sp = ocellus::model::splice_prompt(*v.lm, v.tok, text, rows, v.tok.add_bos() && ocellus::text::bos_from_tokenizer(t),
                                                      "<image>", v.vision->markers());
        const auto r = ocellus::lm::generate_embedded(*v.lm, v.tok, sp.embeddings, sp.ids, co.gen, print_piece);
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

  auto* cache = app.add_subcommand("cache", "Run a frozen vision tower over a dataset's images once; store the features");
  std::string ca_model, ca_mmproj, ca_data, ca_images, ca_out;
  int64_t ca_batch = 8;
  bool ca_skip = false;
  cache->add_option("-m,--model", ca_model, "Hugging Face LLaVA-style folder (its tower and feature layer)");
  cache->add_option("--mmproj", ca_mmproj, "Or an mmproj GGUF")->excludes("--model");
  cache->add_option("--data", ca_data, "LLaVA conversation JSON (the images it names)")->required();
  cache->add_option("--images", ca_images, "Folder the JSON's image paths are relative to");
  cache->add_option("-o,--output", ca_out, "Cache file (.safetensors)")->required();
  cache->add_option("--batch", ca_batch, "Images per tower call")->capture_default_str()->check(CLI::Range(1, 4096));
  cache->add_flag("--skip-bad", ca_skip, "Skip malformed records and missing or broken images (reported) instead of stopping");
  int64_t ca_hidden = -1;
  cache->add_option("--hidden-after", ca_hidden, "Store the hidden states after this many blocks instead of the features "
                    "(for recipes whose tower_from trains the blocks above)")->check(CLI::Range(0, 4096));
  cache->callback([&] {
    ocellus::set_num_threads(threads);
    if (ca_model.empty() == ca_mmproj.empty()) throw std::runtime_error("give the tower with --model DIR or --mmproj FILE");
    const auto vm = ca_model.empty() ? ocellus::model::load_mmproj(ca_mmproj) : ocellus::model::load_hf_vision(ca_model);
    std::vector<std::string> skipped;
    const auto recs = ocellus::train::read_llava_json(ca_data, ca_skip ? ocellus::train::OnBad::Skip : ocellus::train::OnBad::Fail, &skipped);
    if (!skipped.empty()) std::fprintf(stderr, "cache: skipped %zu malformed record(s), first: %s\n", skipped.size(), skipped[0].c_str());
    std::vector<std::string> paths;
    for (const auto& r : recs)
      if (!r.image.empty()) paths.push_back(ca_images.empty() ? r.image : ca_images + "/" + r.image);
    ocellus::ProgressLine progress;
    std::vector<std::string> bad_images;
    const int64_t n = ocellus::train::build_feature_cache(vm->tower(), paths, ca_out, ca_batch, [&](const ocellus::train::CacheProgress& p) {
      const double rate = double(p.done) / std::max(1e-9, p.seconds);
      char line[160];
      std::snprintf(line, sizeof line, "cache: %lld/%lld images, %.1f images/s, ETA %.0f s", (long long)p.done, (long long)p.total, rate,
                    double(p.total - p.done) / std::max(1e-9, rate));
      progress.update(p.done, p.total, line);
    }, ca_hidden, ca_skip ? &bad_images : nullptr);
    progress.finish();
    for (size_t i = 0; i < bad_images.size() && i < 5; ++i) std::fprintf(stderr, "cache: skipped %s\n", bad_images[i].c_str());
    if (!bad_images.empty()) std::fprintf(stderr, "cache: skipped %zu missing or broken image(s)\n", bad_images.size());
    std::printf("wrote %s: %lld distinct images (%zu records)\n", ca_out.c_str(), (long long)n, paths.size());
  });

  auto* data = app.add_subcommand("data", "Build training data (datasets: fashion-vqa)");
  data->require_subcommand(0, 1);
  data->allow_extras();  // an unknown dataset name gets the message below, not CLI11's
  data->callback([&] {
    if (!data->get_subcommands().empty()) return;
    const std::vector<std::string> rest = data->remaining();
    if (rest.empty()) throw std::runtime_error("data: name a dataset (known: fashion-vqa)");
    throw std::runtime_error("data: unknown dataset '" + rest[0] + "' (known: fashion-vqa)");
  });
  auto* fashion = data->add_subcommand("fashion-vqa", "Scenes of Fashion-MNIST photos (Debian's dataset-fashion-mnist) with captions, "
                                       "instruction conversations (also as text-only reading comprehension, train_read.json, and with "
                                       "contrastive counts added, train_instruct_contrast.json) and evaluation questions");
  ocellus::train::FashionVqaOptions fo;
  fashion->add_option("-o,--output", fo.out, "Output folder")->required();
  fashion->add_option("--source", fo.source, "Folder of the IDX files")->capture_default_str();
  fashion->add_option("--train-scenes", fo.train_scenes, "Scenes from the 60k training photos")->capture_default_str()->check(CLI::Range(1, 10000000));
  fashion->add_option("--test-scenes", fo.test_scenes, "Scenes from the 10k test photos")->capture_default_str()->check(CLI::Range(0, 10000000));
  fashion->add_option("--val-scenes", fo.val_scenes, "Validation scenes (val_eval.json) from the training photos no training scene uses: "
                      "for choosing a recipe without looking at the test scenes")->capture_default_str()->check(CLI::Range(0, 10000000));
  fashion->add_flag("--photo-deck", fo.photo_deck, "Training scenes deal their photos from a shuffled deck, each photo once before any "
                    "repeats (more distinct photos for the same scenes), instead of drawing each uniformly");
  fashion->add_option("--grid", fo.grid, "Cells per side (2 or 3)")->capture_default_str()->check(CLI::Range(2, 3));
  fashion->add_option("--max-items", fo.max_items, "Items per scene at most (at most the cells)")->capture_default_str()->check(CLI::Range(1, 9));
  fashion->add_option("--seed", fo.seed, "Random seed")->capture_default_str()->check(kSeed);
  fashion->callback([&] {
    const auto st = ocellus::train::build_fashion_vqa(fo);
    std::printf("wrote %s: %lld training scenes (%lld distinct photos), %lld test scenes, %lld evaluation questions", fo.out.c_str(),
                (long long)st.train_scenes, (long long)st.train_photos, (long long)st.test_scenes, (long long)st.eval_questions);
    if (st.val_scenes > 0)
      std::printf(", %lld validation scenes (%lld questions; from the %lld training photos no training scene shows)",
                  (long long)st.val_scenes, (long long)st.val_questions, (long long)st.val_photos);
    std::printf("\n");
  });

  auto* init = app.add_subcommand("init", "Create a new random-weight VLM (llama text model, SigLIP-style tower, MLP or attention-block connector) "
                                  "as a Hugging Face LLaVA folder, for training from scratch");
  ocellus::model::InitSpec is;
  std::string in_tok, in_out;
  init->add_option("-o,--output", in_out, "Output folder")->required();
  init->add_option("--tokenizer", in_tok, "tokenizer.json (or a model / folder holding one); see train-tokenizer")->required();
  init->add_option("--n-embd", is.n_embd, "Text model width")->capture_default_str();
  init->add_option("--n-ff", is.n_ff, "Text model feed-forward width")->capture_default_str();
  init->add_option("--n-layer", is.n_layer, "Text model blocks")->capture_default_str();
  init->add_option("--n-head", is.n_head, "Attention heads")->capture_default_str();
  init->add_option("--n-head-kv", is.n_head_kv, "Key/value heads")->capture_default_str();
  init->add_option("--n-ctx", is.n_ctx, "Context length")->capture_default_str();
  init->add_option("--image-size", is.image_size, "Tower input size (pixels)")->capture_default_str();
  init->add_option("--patch-size", is.patch_size, "Patch size (pixels)")->capture_default_str();
  init->add_option("--vision-embd", is.vision_embd, "Tower width")->capture_default_str();
  init->add_option("--vision-ff", is.vision_ff, "Tower feed-forward width")->capture_default_str();
  init->add_option("--vision-layers", is.vision_layers, "Tower blocks")->capture_default_str();
  init->add_option("--vision-heads", is.vision_heads, "Tower heads")->capture_default_str();
  init->add_option("--connector", is.connector, "mlp2x_gelu (LLaVA) or attn_blocks (Llama 3-V's self-attention blocks)")->capture_default_str();
  init->add_option("--connector-blocks", is.connector_blocks, "Blocks of an attn_blocks connector")->capture_default_str();
  init->add_option("--feature-layer", is.feature_layer,
                   "Tower hidden state the connector reads (LLaVA's vision_feature_layer: -1 last block, -2 the one before; "
                   "0 after the post-LayerNorm)")->capture_default_str();
  init->add_option("--merge", is.merge,
                   "Patches merged per side into one image token before the connector (Qwen2-VL's spatial_merge_size; "
                   "2: each 2x2 block of patch features, concatenated, is one token)")->capture_default_str();
  init->add_option("--from", is.from, "Take the text model and tower from this LLaVA folder (same sizes); only the connector is new");
  init->add_option("--seed", is.seed, "Random seed")->capture_default_str()->check(kSeed);
  init->add_option("--chat-template", is.chat_template, "chatml or vicuna (written into tokenizer_config.json)")->capture_default_str();
  init->callback([&] {
    const auto tok = ocellus::text::Tokenizer::from_file(in_tok);
    const int64_t n = ocellus::model::init_llava(is, tok, in_out);
    std::printf("wrote %s: %lld parameters, vocabulary %d\n", in_out.c_str(), (long long)n, tok.n_vocab());
  });

  auto* ev = app.add_subcommand("eval", "Answer an evaluation file's questions greedily and score them (per category, POPE yes/no, "
                                "multiple choice)");
  std::string ev_model, ev_mmproj, ev_questions, ev_images, ev_out, ev_template;
  int32_t ev_max = 16;
  int64_t ev_limit = 0;
  ev->add_option("-m,--model", ev_model, "Text model GGUF (with --mmproj) or a Hugging Face LLaVA-style folder")->required();
  ev->add_option("--mmproj", ev_mmproj, "Vision projector (mmproj GGUF)");
  ev->add_option("--questions", ev_questions, "Evaluation JSON: [{question_id, image, question, answer, category, choices?}]")->required();
  ev->add_option("--images", ev_images, "Folder the image paths are relative to");
  ev->add_option("-o,--output", ev_out, "Write the report and every answer as JSON");
  ev->add_option("--max-tokens", ev_max, "Tokens per answer at most")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  ev->add_option("--limit", ev_limit, "Only the first N questions (0: all)")->check(kCount);
  ev->add_option("--chat-template", ev_template, "llama2, llama3, vicuna, chatml, phi2 (default: from the model)");
  ev->callback([&] {
    ocellus::set_num_threads(threads);
    auto qs = ocellus::eval::read_questions(ev_questions);
    if (ev_limit > 0 && int64_t(qs.size()) > ev_limit) qs.resize(size_t(ev_limit));
    const ocellus::model::Vlm v = ocellus::model::load_vlm(ev_model, ev_mmproj);
    const auto t0 = std::chrono::steady_clock::now();
    ocellus::ProgressLine progress;
    const auto answers = ocellus::eval::answer_all(v, qs, ev_images, ocellus::text::resolve_chat_template(ev_template, ev_model, v.tok), ev_max, [&](int64_t done, int64_t total) {
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

  auto* train = app.add_subcommand("train", "Train a VLM stage from a recipe (JSON): language-model pretraining, SigLIP tower pretraining, "
                                                   "connector pretraining or fine-tuning");
  std::string tr_recipe;
  bool tr_resume = false, tr_overwrite = false;
  train->add_option("--recipe", tr_recipe, "Recipe file (see recipes/ and the README)")->required();
  CLI::Option* resume_opt = train->add_flag("--resume", tr_resume, "Continue from the recipe's latest checkpoint");
  train->add_flag("--overwrite", tr_overwrite, "Start over in an output folder that already holds a run (removes its checkpoints, "
                  "metrics and model)")->excludes(resume_opt);
  train->callback([&] {
    // Under mpirun: one share of every batch per process, the cores divided among them.
    const ocellus::train::Dist& dist = ocellus::train::dist_init();
    ocellus::set_num_threads(threads > 0 ? threads : std::max(1, ocellus::num_threads() / dist.size));
    const ocellus::train::Recipe r = ocellus::train::read_recipe(tr_recipe);
    if (dist.size > 1 && dist.main()) std::fprintf(stderr, "train: %d processes, %d threads each\n", dist.size, ocellus::num_threads());
    const auto start = tr_resume ? ocellus::train::Start::Resume : tr_overwrite ? ocellus::train::Start::Overwrite : ocellus::train::Start::Fresh;
    ocellus::ProgressLine progress;
    const auto res = ocellus::train::run_recipe(r, start, [&](const ocellus::train::StepStats& s) {
      if (!dist.main()) return;
      const int width = 24, fill = int(double(width) * double(s.step) / double(s.steps));
      const double eta = s.elapsed_s / double(s.step - s.first_step) * double(s.steps - s.step);  // this run's pace
      char line[256];
      std::snprintf(line, sizeof line, "train: [%-*s] %lld/%lld loss %.4f lr %.2e %.0f tok/s ETA %.0f s", width,
                    std::string(size_t(fill), '=').c_str(), (long long)s.step, (long long)s.steps, s.loss, s.lr, s.tokens_per_s, eta);
      progress.update(s.step, s.steps, line);
    });
    if (dist.main()) {
      progress.finish();
      if (!res.losses.empty())
        std::printf("trained steps %lld..%lld: loss %.4f -> %.4f; model in %s%s%s%s%s\n", (long long)res.first_step + 1,
                    (long long)(res.first_step + int64_t(res.losses.size())), res.losses.front(), res.losses.back(),
                    res.model_dir.c_str(), res.gguf_model.empty() ? "" : " (GGUF: ", res.gguf_model.c_str(),
                    res.gguf_model.empty() ? "" : ", ", res.gguf_model.empty() ? "" : (res.gguf_mmproj + ")").c_str());
    }
    ocellus::train::dist_finalize();
  });

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
  return inspect_failures ? 1 : 0;
}
