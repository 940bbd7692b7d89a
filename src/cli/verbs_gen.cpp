// The verbs of the generation half (LlamaFusion, gen/fusion_model.h): generate-image, and
// eval-fusion (eval/fusion_eval.h).
#include <unistd.h>

#include <chrono>

#include "cli.h"
#include "ocellus/eval/fusion_eval.h"
#include "ocellus/gen/fusion_model.h"
#include "ocellus/io/image.h"
#include "ocellus/io/json.h"

namespace ocellus::cli {

namespace {

// A LlamaFusion folder, or one clear error: a file, a folder without config.json, or a model of
// another kind (a VLM or a text model has no image modules). verb: the verb the error names.
void require_fusion_folder(const std::string& dir, const char* verb) {
  OCELLUS_CHECK(!io::is_file(dir), verb, ": ", dir, " is a file; a LlamaFusion model is a folder (config.json with ",
                "model_type \"llamafusion\", model.safetensors with the image modules)");
  OCELLUS_CHECK(io::is_directory(dir), verb, ": ", dir, " does not exist");
  OCELLUS_CHECK(io::is_file(dir + "/config.json"), verb, ": ", dir, " has no config.json (not a LlamaFusion model folder)");
  const nlohmann::json j = io::read_json_file(dir + "/config.json", "model config");
  const std::string type = j.is_object() && j.contains("model_type") && j["model_type"].is_string() ? j["model_type"].get<std::string>() : "";
  OCELLUS_CHECK(type == "llamafusion", verb, ": ", dir, " is a '", type.empty() ? "unknown" : type,
                "' model without image modules (", verb, " needs a LlamaFusion model)");
}

// An output path that can be written, checked before any work.
void require_writable(const std::string& path, const char* verb) {
  const std::string dir = io::parent_dir(path);
  OCELLUS_CHECK(!io::is_directory(path), verb, ": -o ", path, " is a folder");
  OCELLUS_CHECK(io::is_directory(dir), verb, ": -o ", path, ": the folder ", dir, " does not exist");
  OCELLUS_CHECK(::access(dir.c_str(), W_OK) == 0, verb, ": -o ", path, ": the folder ", dir, " is not writable");
}

}  // namespace

void add_generate_image(CLI::App& app) {
  auto* g = app.add_subcommand("generate-image", "Draw an image from a caption with a LlamaFusion model (default: the bundled fashion-fusion)");
  static std::string model, prompt, out, sampler = "ddim";
  static gen::ImageSampling s;
  g->add_option("-m,--model", model, "LlamaFusion model folder (config.json, model.safetensors; default: models/fashion-fusion)");
  g->add_option("-p,--prompt", prompt, "The caption, e.g. \"a sneaker in the top left and a bag in the bottom right\"")->required();
  g->add_option("-o,--output", out, "The PNG to write")->required();
  g->add_option("--steps", s.steps, "Denoising steps")->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(100000)));
  g->add_option("--cfg", s.cfg, "Classifier-free guidance scale (1: none)")->capture_default_str()->check(CLI::Range(0.0f, 100.0f));
  g->add_option("--seed", s.seed, "Seed of the starting noise")->capture_default_str();
  g->add_option("--sampler", sampler, "ddim (deterministic) or ddpm (stochastic)")->capture_default_str()->check(CLI::IsMember({"ddim", "ddpm"}));
  g->callback([] {
    require_text(prompt, "the caption (-p)");
    require_writable(out, "generate-image");
    const std::string dir = model.empty() ? bundled_dir("fashion-fusion", {"config.json", "model.safetensors"}) : model;
    require_fusion_folder(dir, "generate-image");
    s.ddpm = sampler == "ddpm";
    const gen::FusionModel m(dir);
    const int64_t n = int64_t(gen::caption_before(m.tokenizer(), prompt).size()), ctx = m.lm().config().n_ctx;
    OCELLUS_CHECK(ctx <= 0 || n + 1 + m.image_rows() <= ctx, "generate-image: the caption is ", n, " tokens; with the image's ",
                  1 + m.image_rows(), " positions it exceeds the model's context of ", ctx);
    ProgressLine progress;
    const auto t0 = std::chrono::steady_clock::now();
    const Tensor img = gen::generate_image(m, prompt, s, [&](int64_t i, int64_t total) {
      progress.update(i, total, "generate-image: denoising step " + std::to_string(i) + "/" + std::to_string(total));
    });
    progress.finish();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    io::ImageRgb8 rgb;
    rgb.height = int(img.dim(0)), rgb.width = int(img.dim(1));
    const int64_t C = img.dim(2);
    for (int64_t p = 0; p < img.dim(0) * img.dim(1); ++p)
      for (int c = 0; c < 3; ++c) {
        const float v = img.data<float>()[p * C + (C == 1 ? 0 : c)];
        rgb.rgb.push_back(uint8_t(std::clamp(std::lround((v + 1.0f) * 127.5f), 0L, 255L)));
      }
    io::save_png(out, rgb);
    std::printf("wrote %s (%dx%d, %lld %s steps, guidance %.1f, seed %llu) in %.1f s\n", out.c_str(), rgb.width, rgb.height,
                (long long)s.steps, sampler.c_str(), double(s.cfg), (unsigned long long)s.seed, secs);
  });
}

void add_eval_fusion(CLI::App& app) {
  auto* e = app.add_subcommand("eval-fusion", "Score a LlamaFusion model on fashion-vqa test scenes: drawn cells judged by a "
                               "classifier (GenEval-style), FID on its features, captions of the real scenes");
  static eval::FusionEvalOptions o;
  static std::string out, sampler = "ddim";
  const std::string mnist = data::FashionVqaOptions{}.source;
  e->add_option("-m,--model", o.model, "LlamaFusion model folder (config.json, model.safetensors)")->required();
  e->add_option("--judge", o.judge, "Classifier folder (config.json, model.safetensors) trained by the \"classifier\" objective "
                "on Fashion-MNIST photos")->required();
  e->add_option("--data", o.data, "Captions file of test scenes (LLaVA JSON, e.g. test_captions.json of `ocellus data fashion-vqa`)")->required();
  e->add_option("--images", o.images, "Folder the scenes' image paths are relative to (default: the folder of --data)");
  e->add_option("--scenes", o.scenes, "Only the first N scenes (at least 2; default: all)")->check(kCount);
  e->add_option("--steps", o.sampling.steps, "Denoising steps")->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(100000)));
  e->add_option("--cfg", o.sampling.cfg, "Classifier-free guidance scale (1: none)")->capture_default_str()->check(CLI::Range(0.0f, 100.0f));
  e->add_option("--seed", o.sampling.seed, "Seed of scene 0's starting noise; scene i's is seed + i")->capture_default_str()->check(kSeed);
  e->add_option("--sampler", sampler, "ddim (deterministic) or ddpm (stochastic)")->capture_default_str()->check(CLI::IsMember({"ddim", "ddpm"}));
  e->add_option("--max-tokens", o.max_tokens, "Tokens per caption the model writes, at most")->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(4096)));
  e->add_option("--photos", o.photos, "Fashion-MNIST test photos (IDX) for the judge's accuracy (default: " + mnist +
                "/t10k-images-idx3-ubyte.gz when it exists; skipped otherwise)");
  e->add_option("--labels", o.labels, "Their labels (IDX; default: t10k-labels-idx1-ubyte.gz beside the default photos)");
  e->add_option("-o,--output", out, "Write the report and every scene's verdicts as JSON");
  e->callback([mnist] {
    require_fusion_folder(o.model, "eval-fusion");
    if (!out.empty()) require_writable(out, "eval-fusion");
    if (o.images.empty()) o.images = io::parent_dir(o.data);
    OCELLUS_CHECK(o.photos.empty() == o.labels.empty(), "eval-fusion: --photos and --labels go together");
    if (o.photos.empty() && io::is_file(mnist + "/t10k-images-idx3-ubyte.gz") && io::is_file(mnist + "/t10k-labels-idx1-ubyte.gz"))
      o.photos = mnist + "/t10k-images-idx3-ubyte.gz", o.labels = mnist + "/t10k-labels-idx1-ubyte.gz";
    o.sampling.ddpm = sampler == "ddpm";
    const eval::FusionEvalReport r = eval::evaluate_fusion(o);
    std::printf("%s", eval::format_fusion_report(r).c_str());
    if (!out.empty()) {
      io::write_text_file_atomically(out, eval::fusion_report_json(r));
      std::printf("wrote %s\n", out.c_str());
    }
  });
}

}  // namespace ocellus::cli
