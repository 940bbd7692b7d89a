// The verbs of the generation half: generate-image (LlamaFusion, gen/fusion_model.h).
#include <unistd.h>

#include <chrono>

#include "cli.h"
#include "ocellus/gen/fusion_model.h"
#include "ocellus/io/image.h"
#include "ocellus/io/json.h"

namespace ocellus::cli {

namespace {

// A LlamaFusion folder, or one clear error: a file, a folder without config.json, or a model of
// another kind (a VLM or a text model has no image modules).
void require_fusion_folder(const std::string& dir) {
  OCELLUS_CHECK(!io::is_file(dir), "generate-image: ", dir, " is a file; a LlamaFusion model is a folder (config.json with ",
                "model_type \"llamafusion\", model.safetensors with the image modules)");
  OCELLUS_CHECK(io::is_directory(dir), "generate-image: ", dir, " does not exist");
  OCELLUS_CHECK(io::is_file(dir + "/config.json"), "generate-image: ", dir, " has no config.json (not a LlamaFusion model folder)");
  const nlohmann::json j = io::read_json_file(dir + "/config.json", "model config");
  const std::string type = j.is_object() && j.contains("model_type") && j["model_type"].is_string() ? j["model_type"].get<std::string>() : "";
  OCELLUS_CHECK(type == "llamafusion", "generate-image: ", dir, " is a '", type.empty() ? "unknown" : type,
                "' model without image modules (generate-image needs a LlamaFusion model)");
}

// An output path that can be written, checked before any work.
void require_writable(const std::string& path) {
  const std::string dir = io::parent_dir(path);
  OCELLUS_CHECK(!io::is_directory(path), "generate-image: -o ", path, " is a folder");
  OCELLUS_CHECK(io::is_directory(dir), "generate-image: -o ", path, ": the folder ", dir, " does not exist");
  OCELLUS_CHECK(::access(dir.c_str(), W_OK) == 0, "generate-image: -o ", path, ": the folder ", dir, " is not writable");
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
    require_writable(out);
    const std::string dir = model.empty() ? bundled_dir("fashion-fusion", {"config.json", "model.safetensors"}) : model;
    require_fusion_folder(dir);
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

}  // namespace ocellus::cli
