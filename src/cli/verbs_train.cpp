// The `ocellus` verbs cache, data, init and train: making a model.
// Each add_* registers one verb; its option values are static: they live as long as the
// App that parses into them (one per process).
#include "cli.h"

namespace ocellus::cli {

void add_cache(CLI::App& app) {
  auto* cache = app.add_subcommand("cache", "Run a frozen vision tower over a dataset's images once; store the features");
  static std::string ca_model, ca_mmproj, ca_data, ca_images, ca_out;
  static int64_t ca_batch = 8;
  static bool ca_skip = false;
  cache->add_option("-m,--model", ca_model, "Hugging Face LLaVA-style folder (its tower and feature layer)");
  cache->add_option("--mmproj", ca_mmproj, "Or an mmproj GGUF")->excludes("--model");
  cache->add_option("--data", ca_data, "LLaVA conversation JSON (the images it names)")->required();
  cache->add_option("--images", ca_images, "Folder the JSON's image paths are relative to");
  cache->add_option("-o,--output", ca_out, "Cache file (.safetensors)")->required();
  cache->add_option("--batch", ca_batch, "Images per tower call")->capture_default_str()->check(CLI::Range(1, 4096));
  cache->add_flag("--skip-bad", ca_skip, "Skip malformed records and missing or broken images (reported) instead of stopping");
  static int64_t ca_hidden = -1;
  cache->add_option("--hidden-after", ca_hidden, "Store the hidden states after this many blocks instead of the features "
                    "(for recipes whose tower_from trains the blocks above)")->check(CLI::Range(0, 4096));
  cache->callback([=] {
    if (ca_model.empty() == ca_mmproj.empty()) throw std::runtime_error("give the tower with --model DIR or --mmproj FILE");
    const auto vm = ca_model.empty() ? ocellus::model::load_mmproj(ca_mmproj) : ocellus::model::load_hf_vision(ca_model);
    std::vector<std::string> skipped;
    const auto recs = ocellus::data::read_llava_json(ca_data, ca_skip ? ocellus::data::OnBad::Skip : ocellus::data::OnBad::Fail, &skipped);
    ocellus::train::report_skipped(skipped, "cache", "malformed record(s)");
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
    ocellus::train::report_skipped(bad_images, "cache", "missing or broken image(s)");
    std::printf("wrote %s: %lld distinct images (%zu records)\n", ca_out.c_str(), (long long)n, paths.size());
  });
}

void add_data(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Build training data (datasets: fashion-vqa)");
  data->require_subcommand(0, 1);
  data->allow_extras();  // an unknown dataset name gets the message below, not CLI11's
  data->fallthrough(false);  // ... and stays here rather than falling through to the top level
  data->callback([=] {
    if (!data->get_subcommands().empty()) return;
    const std::vector<std::string> rest = data->remaining();
    if (rest.empty()) throw std::runtime_error("data: name a dataset (known: fashion-vqa)");
    throw std::runtime_error("data: unknown dataset '" + rest[0] + "' (known: fashion-vqa)");
  });
  auto* fashion = data->add_subcommand("fashion-vqa", "Scenes of Fashion-MNIST photos (Debian's dataset-fashion-mnist) with captions, "
                                       "instruction conversations (also as text-only reading comprehension, train_read.json, and with "
                                       "contrastive counts added, train_instruct_contrast.json) and evaluation questions");
  static ocellus::data::FashionVqaOptions fo;
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
  fashion->callback([=] {
    const auto st = ocellus::data::build_fashion_vqa(fo);
    std::printf("wrote %s: %lld training scenes (%lld distinct photos), %lld test scenes, %lld evaluation questions", fo.out.c_str(),
                (long long)st.train_scenes, (long long)st.train_photos, (long long)st.test_scenes, (long long)st.eval_questions);
    if (st.val_scenes > 0)
      std::printf(", %lld validation scenes (%lld questions; from the %lld training photos no training scene shows)",
                  (long long)st.val_scenes, (long long)st.val_questions, (long long)st.val_photos);
    std::printf("\n");
  });
}

void add_init(CLI::App& app) {
  auto* init = app.add_subcommand("init", "Create a new random-weight VLM (a text model of any family, SigLIP-style tower, any connector) "
                                  "as a Hugging Face LLaVA folder, for training from scratch");
  static ocellus::model::InitSpec is;
  static std::string in_tok, in_out;
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
  init->add_option("--family", is.family, "Text model family, as GGUF names it (llama, qwen2, phi2, stablelm)")->capture_default_str();
  init->add_option("--connector", is.connector, "Connector type (linear, mlp2x_gelu, mlp_norm, ldpv2, attn_blocks, resampler)")->capture_default_str();
  init->add_option("--connector-queries", is.connector_queries, "Queries of a resampler connector")->capture_default_str()->check(CLI::Range(1, 4096));
  init->add_flag("--qkv-bias", is.qkv_bias, "Biases on q / k / v (qwen2 and phi2 have them always)");
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
  init->callback([=] {
    const auto tok = ocellus::text::Tokenizer::from_file(in_tok);
    const int64_t n = ocellus::model::init_llava(is, tok, in_out);
    std::printf("wrote %s: %lld parameters, vocabulary %d\n", in_out.c_str(), (long long)n, tok.n_vocab());
  });
}

void add_train(CLI::App& app) {
  auto* train = app.add_subcommand("train", "Train a stage from a recipe (JSON): language-model pretraining, SigLIP tower pretraining, "
                                                   "connector pretraining or fine-tuning; a VAE or an image classifier from scratch");
  static std::string tr_recipe;
  static bool tr_resume = false, tr_overwrite = false;
  train->add_option("--recipe", tr_recipe, "Recipe file (see recipes/ and the README)")->required();
  CLI::Option* resume_opt = train->add_flag("--resume", tr_resume, "Continue from the recipe's latest checkpoint");
  train->add_flag("--overwrite", tr_overwrite, "Start over in an output folder that already holds a run (removes its checkpoints, "
                  "metrics and model)")->excludes(resume_opt);
  train->callback([=] {
    // Under mpirun: one share of every batch per process, and without -t the cores divided among them.
    const ocellus::train::Dist& dist = ocellus::train::dist_init();
    if (globals().threads == 0 && dist.size > 1) ocellus::set_num_threads(std::max(1, ocellus::num_threads() / dist.size));
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
}

}  // namespace ocellus::cli
