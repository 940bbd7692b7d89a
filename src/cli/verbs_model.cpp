// The `ocellus` verbs info, inspect, synth and quantize: the machine and model files.
// Each add_* registers one verb; its option values are static: they live as long as the
// App that parses into them (one per process).
#include "cli.h"
#include "ocellus/io/gguf_convert.h"

namespace ocellus::cli {

void add_info(CLI::App& app) {
  auto* info = app.add_subcommand("info", "Show the CPU features and the kernels ocellus picked");
  info->callback([=] {
    std::printf("ocellus 0.1.0\n");
    std::printf("cpu features : %s\n", ocellus::cpu_features().str().c_str());
    std::printf("kernels      : %s\n", ocellus::isa_name(ocellus::active_isa()));
    const char* coretype = std::getenv("OPENBLAS_CORETYPE");
    const std::string core = ocellus::blas_core();
    std::printf("openblas core: %s%s%s%s\n", core.c_str(), coretype ? " (OPENBLAS_CORETYPE=" : "",
                coretype ? coretype : "", coretype ? ")" : "");
    std::printf("threads      : %d\n", ocellus::num_threads());
  });
}

void add_inspect(CLI::App& app) {
  auto* inspect = app.add_subcommand("inspect", "Summarize model files: GGUF (text model or mmproj), "
                                                "a .safetensors file, or a Hugging Face folder");
  static std::vector<std::string> inspect_paths;
  static ocellus::io::InspectOptions inspect_opt;
  inspect->add_option("files", inspect_paths, "Model files or folders")->required();
  inspect->add_flag("--tensors", inspect_opt.tensors, "List every tensor (name, dtype, shape, bytes, offset)");
  inspect->add_flag("--metadata", inspect_opt.metadata, "List every metadata key with its value");
  inspect->callback([=] {
    for (size_t i = 0; i < inspect_paths.size(); ++i) {
      try {
        std::printf("%s%s", i ? "\n" : "", ocellus::io::inspect_model_file(inspect_paths[i], inspect_opt).c_str());
      } catch (const std::exception& e) {  // report and go on with the other files
        std::fprintf(stderr, "ocellus: error: %s\n", e.what());
        ++globals().failures;
      }
    }
  });
}

void add_synth(CLI::App& app) {
  auto* synth = app.add_subcommand("synth", "Write a random-weight model of a named real shape as GGUF");
  static std::string synth_shape, synth_out, synth_dtype = "f16";
  static ocellus::model::SynthOptions synth_opt;
  static bool synth_list = false;
  synth->add_option("shape", synth_shape, "Shape name (see --list)");
  synth->add_option("-o,--output", synth_out, "Output .gguf file");
  synth->add_option("--dtype", synth_dtype, "Weight matrices: f32, f16, bf16, q8_0, q4_0")->capture_default_str();
  synth->add_option("--layers", synth_opt.layers, "Number of blocks (default: the shape's own)")->check(CLI::Range(1, 10000));
  synth->add_option("--seed", synth_opt.seed, "Random seed")->capture_default_str()->check(kSeed);
  synth->add_flag("--list", synth_list, "List the known shapes");
  synth->callback([=] {
    if (synth_list || synth_shape.empty()) {
      for (const auto& s : ocellus::model::synth_shapes())
        std::printf("%-22s %s %s\n", s.name.c_str(), s.vision ? "mmproj" : "text  ", s.description.c_str());
      if (!synth_list) throw CLI::ValidationError("shape", "give a shape name (listed above)");
      return;
    }
    if (synth_out.empty()) throw CLI::RequiredError("--output");
    synth_opt.dtype = ocellus::dtype_from_name(synth_dtype);
    const auto& shape = ocellus::model::synth_shape(synth_shape);
    const uint64_t bytes = ocellus::model::write_synth_model(shape, synth_opt, synth_out);
    std::printf("wrote %s: %s (%s), %s weights, %s of tensor data\n", synth_out.c_str(), shape.name.c_str(),
                shape.description.c_str(), synth_dtype.c_str(), ocellus::io::human_bytes(bytes).c_str());
  });
}

void add_quantize(CLI::App& app) {
  auto* q = app.add_subcommand("quantize", "Write a GGUF file (text model or mmproj) with its weights at another type or llama.cpp's "
                                           "K-quant mixes: F32, F16, BF16, Q8_0, Q4_0, Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, Q6_K");
  static std::string in, out, type;
  static bool force = false;
  q->add_option("input", in, "GGUF file to read (f32, f16 or bf16 weights)")->required()->check(CLI::ExistingFile);
  q->add_option("output", out, "GGUF file to write")->required();
  q->add_option("type", type,
                "F32, F16, BF16, Q8_0, Q4_0, or a K mix (text models): Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, Q6_K; as llama-quantize spells "
                "them, any case. A vision projector (mmproj) takes F32, F16, BF16 or Q8_0")
      ->required();
  q->add_flag("--force", force, "Replace the output file if it exists");
  q->callback([=] {
    const ocellus::io::QuantTarget& target = ocellus::io::quant_target_from_name(type);
    const ocellus::io::ConvertResult r = ocellus::io::convert_gguf(in, out, target, force);
    std::printf("wrote %s: %d tensors converted (%s), %d as they were; %s of tensor data (was %s)\n", out.c_str(), r.converted,
                target.name, r.kept, ocellus::io::human_bytes(r.out_bytes).c_str(), ocellus::io::human_bytes(r.in_bytes).c_str());
    if (r.fallback)
      std::printf("note: %d matrices have rows that are not whole 256-blocks: written at q4_0 / q8_0 (llama.cpp writes q5_0 / q5_1 "
                  "there, which ocellus does not compute)\n", r.fallback);
  });
}

}  // namespace ocellus::cli
