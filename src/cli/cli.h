#pragma once
// What the `ocellus` verbs share: the global options, the helpers several verbs use, the option
// checks, and one add_* per verb (registered by main.cpp, defined in verbs_*.cpp).
#include <cstdio>
#include <filesystem>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <exception>
#include <string>
#include <vector>


#include <chrono>
#include <iostream>

#include "ocellus/lm/family.h"
#include "ocellus/core/cpu.h"
#include "ocellus/core/error.h"
#include "ocellus/core/progress.h"
#include "ocellus/eval/eval.h"
#include "ocellus/core/threads.h"
#include "ocellus/io/inspect.h"
#include "ocellus/io/file.h"
#include "ocellus/lm/generate.h"
#include "ocellus/model/answer.h"
#include "ocellus/model/init.h"
#include "ocellus/model/synth.h"
#include "ocellus/model/vlm.h"
#include "ocellus/text/chat.h"
#include "ocellus/vision/preprocess.h"
#include "ocellus/text/bpe_train.h"
#include "ocellus/text/tokenizer.h"
#include "ocellus/data/llava_json.h"
#include "ocellus/train/dist.h"
#include "ocellus/data/fashion_vqa.h"
#include "ocellus/train/feature_cache.h"
#include "ocellus/train/trainer.h"

#include <CLI/CLI.hpp>

namespace ocellus::cli {

// Options every verb reads: -t, and the exit status of verbs that go on after an error.
struct Globals {
  int threads = 0;   // 0: OCELLUS_THREADS or all cores
  int failures = 0;  // inspect: files that could not be read
};
Globals& globals();

// The folder of a model that ships with ocellus (models/NAME) holding `files`; an error listing
// where it looked when there is none.
std::string bundled_dir(const std::string& name, const std::vector<std::string>& files);

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
ocellus::Tensor image_input(const ocellus::model::VisionModel& vm, const std::string& image, const std::string& pixels);

// Image rows for each input, with a progress line and the encode time on stderr.
std::vector<ocellus::Tensor> encode_images(const ocellus::model::VisionModel& vm, const std::vector<std::string>& images,
                                           const std::string& pixels, double* ms);

// Value checks shared by the verbs; CLI11 names the option and the valid range when one fails.
// Seeds are unsigned: CLI11 alone would wrap -1 around to 2^64 - 1.
inline const CLI::Validator kSeed([](std::string& v) { return !v.empty() && v[0] == '-' ? std::string("a seed is a whole number >= 0") : std::string(); },
                           "SEED");
inline const CLI::Range kTokens(0, 1 << 20);                 // -n: tokens to generate
inline const CLI::Range kContext(1, 1 << 20);                // -c: context size
inline const CLI::Range kTemperature(0.0, 100.0);            // --temp (0: greedy)
inline const CLI::Range kProbability(0.0, 1.0);              // --top-p, --min-p
inline const CLI::Range kCount(int64_t(0), int64_t(1) << 40);  // a count that may be 0 (--limit)

void require_text(const std::string& text, const char* what);

void write_f32(const std::string& path, const ocellus::Tensor& t);

// Streams generated text to stdout as it comes.
void print_piece(const std::string& piece);
// The process's peak resident memory so far (getrusage), in MiB: the stats lines report it.
double peak_memory_mib();
// Milliseconds since `since`.
double ms_since(std::chrono::steady_clock::time_point since);
// The stats line `generate` and `run` end with on stderr: load time, the image encode when there
// was one (image_ms >= 0), prefill and decode speed, why it stopped, peak memory.
void print_stats(const ocellus::lm::GenerateResult& r, double load_ms, double image_ms = -1);

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
  // The model named by -m / --mmproj, or without -m the one that ships with ocellus.
  ocellus::model::Vlm load();
};

void add_info(CLI::App& app);
void add_inspect(CLI::App& app);
void add_synth(CLI::App& app);
void add_quantize(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_train_tokenizer(CLI::App& app);
void add_generate(CLI::App& app);
void add_logits(CLI::App& app);
void add_embed(CLI::App& app);
void add_run(CLI::App& app);
void add_chat(CLI::App& app);
void add_cache(CLI::App& app);
void add_data(CLI::App& app);
void add_init(CLI::App& app);
void add_eval(CLI::App& app);
void add_train(CLI::App& app);
void add_generate_image(CLI::App& app);
void add_eval_fusion(CLI::App& app);
void add_serve(CLI::App& app);

}  // namespace ocellus::cli
