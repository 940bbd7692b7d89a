// The `ocellus` command: thin; every verb calls a library function.
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <exception>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "ocellus/core/cpu.h"
#include "ocellus/core/threads.h"
#include "ocellus/io/inspect.h"
#include "ocellus/io/file.h"
#include "ocellus/io/gguf.h"
#include "ocellus/lm/generate.h"
#include "ocellus/model/synth.h"
#include "ocellus/text/bpe_train.h"
#include "ocellus/text/tokenizer.h"

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
  synth->add_option("--layers", synth_opt.layers, "Number of blocks (default: the shape's own)");
  synth->add_option("--seed", synth_opt.seed, "Random seed")->capture_default_str();
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
  trainer->add_option("--vocab-size", bpe_opt.vocab_size, "Tokens in all: specials + 256 bytes + merges")->capture_default_str();
  trainer->add_option("--special", bpe_opt.specials, "Special tokens, in id order")->capture_default_str();
  trainer->add_option("--bos", bpe_opt.bos, "The special token that begins a sequence (none by default)");
  trainer->add_option("--eos", bpe_opt.eos, "The special token that ends a sequence")->capture_default_str();
  trainer->add_option("--pre", bpe_pre, "Pre-tokenizer: gpt-2, llama3, qwen2")->capture_default_str();
  trainer->add_option("--min-frequency", bpe_opt.min_frequency, "Stop when no pair occurs this often")->capture_default_str();
  trainer->callback([&] {
    bpe_opt.pre = ocellus::text::pretokenizer_from_name(bpe_pre);
    std::vector<std::string> texts;
    size_t bytes = 0;
    for (const std::string& f : bpe_files) {
      texts.push_back(ocellus::io::read_text_file(f, size_t(4) << 30));
      bytes += texts.back().size();
    }
    bpe_opt.progress = [](int64_t done, int64_t total) {
      std::fprintf(stderr, "\rmerges %lld / %lld", (long long)done, (long long)total);
    };
    const auto tok = ocellus::text::train_bpe(texts, bpe_opt);
    std::fprintf(stderr, "\n");
    tok.save_hf_json(bpe_out);
    std::printf("wrote %s: %d tokens learned from %zu bytes of text\n", bpe_out.c_str(), tok.n_vocab(), bytes);
  });

  auto* gen = app.add_subcommand("generate", "Generate text from a prompt with a text model (GGUF file or Hugging Face folder)");
  std::string gen_model, gen_prompt;
  ocellus::lm::GenerateParams gp;
  gen->add_option("-m,--model", gen_model, "Text model: GGUF file or Hugging Face folder (llama, qwen2, phi2, stablelm)")->required();
  gen->add_option("-p,--prompt", gen_prompt, "Prompt text")->required();
  gen->add_option("-n,--n-predict", gp.n_predict, "Tokens to generate at most")->capture_default_str();
  gen->add_option("-c,--ctx", gp.n_ctx, "Context size (default: the model's, at most 4096)");
  gen->add_option("--temp", gp.sampling.temperature, "Temperature; 0 = greedy")->capture_default_str();
  gen->add_option("--top-k", gp.sampling.top_k, "Top-k (0 = off)")->capture_default_str();
  gen->add_option("--top-p", gp.sampling.top_p, "Top-p (1 = off)")->capture_default_str();
  gen->add_option("--min-p", gp.sampling.min_p, "Min-p (0 = off)")->capture_default_str();
  gen->add_option("--repeat-penalty", gp.sampling.repeat_penalty, "Repetition penalty (1 = off)")->capture_default_str();
  gen->add_option("--repeat-last-n", gp.sampling.repeat_last_n, "Tokens the penalty looks back over")->capture_default_str();
  gen->add_option("--seed", gp.sampling.seed, "Random seed")->capture_default_str();
  gen->add_option("--stop", gp.stop, "Stop string (repeatable)");
  gen->callback([&] {
    ocellus::set_num_threads(threads);
    const auto model = ocellus::lm::load_model(gen_model);  // GGUF file or Hugging Face folder
    const auto tok = ocellus::text::Tokenizer::from_file(gen_model);
    const std::vector<int32_t> prompt = tok.encode(gen_prompt, true, false);
    std::printf("%s", gen_prompt.c_str());
    std::fflush(stdout);
    const auto r = ocellus::lm::generate(*model, tok, prompt, gp, [](const std::string& s) {
      std::printf("%s", s.c_str());
      std::fflush(stdout);
    });
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
  lg->callback([&] {
    ocellus::set_num_threads(threads);
    const auto model = ocellus::lm::load_model(lg_model);  // GGUF file or Hugging Face folder
    std::vector<int32_t> ids;
    if (!lg_ids.empty()) {
      const std::string b = ocellus::io::read_text_file(lg_ids);
      if (b.size() % 4 != 0) throw std::runtime_error(lg_ids + ": size is not a whole number of int32 ids");
      ids.resize(b.size() / 4);
      std::memcpy(ids.data(), b.data(), b.size());
    } else if (lg->count("--prompt")) {
      ids = ocellus::text::Tokenizer::from_file(lg_model).encode(lg_prompt, true, false);
    } else {
      throw CLI::RequiredError("--prompt or --ids");
    }
    if (ids.empty()) throw std::runtime_error("no tokens to run");
    ocellus::lm::KvCache cache(model->config(), int64_t(ids.size()));
    const ocellus::Tensor logits = model->forward_ids(ids, cache, true);
    ocellus::io::write_file_atomically(lg_out, [&](std::FILE* f) {
      ocellus::io::write_bytes(f, logits.raw(), logits.nbytes(), lg_out);
    });
    std::printf("wrote %s: [%lld, %lld] float32\n", lg_out.c_str(), (long long)logits.dim(0), (long long)logits.dim(1));
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ocellus: error: %s\n", e.what());
    return 1;
  }
  return inspect_failures ? 1 : 0;
}
