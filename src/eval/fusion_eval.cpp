#include "ocellus/eval/fusion_eval.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/core/progress.h"
#include "ocellus/data/fashion_vqa.h"
#include "ocellus/data/llava_json.h"
#include "ocellus/eval/fid.h"
#include "ocellus/io/file.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/json.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/ops/shape.h"

namespace ocellus::eval {

namespace {

constexpr int64_t kBatch = 256;  // cells per pass through the judge

// The judge's verdicts on cells in batches of kBatch, concatenated along the first dimension.
template <class Fn>
Tensor in_batches(const Tensor& cells, Fn fn) {
  std::vector<Tensor> parts;
  for (int64_t a = 0; a < cells.dim(0); a += kBatch) parts.push_back(fn(cells.slice(0, a, std::min(cells.dim(0), a + kBatch)).contiguous()));
  return parts.size() == 1 ? parts[0] : ops::concat(parts, 0);
}

// Cells of every scene, stacked [Σ cells, 28, 28, 1].
Tensor stack(const std::vector<Tensor>& cells) { return cells.size() == 1 ? cells[0] : ops::concat(cells, 0); }

std::string cell_word(int c) {
  const auto& names = data::fashion_class_names();
  return c < 0 ? "empty" : size_t(c) < names.size() ? names[size_t(c)] : "class " + std::to_string(c);
}

std::string trimmed(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\n\r"), b = s.find_last_not_of(" \t\n\r");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

CnnJudge::CnnJudge(const std::string& dir) {
  const std::string what = "eval-fusion: --judge " + dir;
  OCELLUS_CHECK(io::is_directory(dir), what, ": not a folder (a classifier is a folder: config.json, model.safetensors)");
  OCELLUS_CHECK(io::is_file(dir + "/config.json"), what, ": no config.json (not a classifier folder)");
  const nlohmann::json j = io::read_json_file(dir + "/config.json", "classifier config");
  // Other models' folders say what they are; a classifier's config.json has no model_type.
  if (j.is_object() && j.contains("model_type"))
    fail(what, ": a '", j["model_type"].is_string() ? j["model_type"].get<std::string>() : j["model_type"].dump(),
         "' model, not a classifier (train one with the \"classifier\" objective)");
  try {
    c_ = vision::parse_cnn_config(j.dump(), dir + "/config.json");
  } catch (const Error& e) {
    fail(what, ": not a classifier folder: ", e.what());
  }
  OCELLUS_CHECK(c_.in_channels == 1 && c_.image_size == kCellSide && c_.n_classes >= 10, what, ": the classifier reads ",
                c_.image_size, " px, ", c_.in_channels, " channel(s), ", c_.n_classes, " classes; scenes' cells are ",
                kCellSide, " px grey photos of 10 classes");
  OCELLUS_CHECK(io::is_file(dir + "/model.safetensors"), what, ": no model.safetensors (a classifier folder holds its weights there)");
  st_ = std::make_unique<io::SafetensorsModel>(io::SafetensorsModel::open(dir + "/model.safetensors"));
  w_ = vision::load_cnn_classifier(nn::f32_file_maker(io::safetensors_source(*st_, dir + "/model.safetensors"), "judge"), c_);
}

CnnJudge::~CnnJudge() = default;

Tensor CnnJudge::features(const Tensor& cells) const {
  return in_batches(cells, [&](const Tensor& b) { return vision::cnn_features(nn::Infer{}, c_, w_, b); });
}

std::vector<int> CnnJudge::classify(const Tensor& cells) const {
  const Tensor logits = in_batches(cells, [&](const Tensor& b) {
    return vision::cnn_logits(nn::Infer{}, w_, vision::cnn_features(nn::Infer{}, c_, w_, b));
  });
  std::vector<int> out;
  const int64_t k = logits.dim(1);
  for (int64_t i = 0; i < logits.dim(0); ++i) {
    const float* row = logits.data<float>() + i * k;
    out.push_back(int(std::max_element(row, row + k) - row));
  }
  return out;
}

Tensor scene_tensor(const io::ImageRgb8& img, const std::string& name) {
  OCELLUS_CHECK(img.width == img.height && img.width % kCellSide == 0 && img.width / kCellSide >= 2 && img.width / kCellSide <= 3,
                name, ": a scene of ", img.width, "x", img.height, " px; fashion-vqa scenes are square grids of 2 or 3 cells of ",
                kCellSide, " px");
  Tensor t = Tensor::empty({img.height, img.width, 1});
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) t.data<float>()[y * img.width + x] = float(img.at(y, x, 0)) / 127.5f - 1.0f;
  return t;
}

Tensor scene_cells(const Tensor& scene) {
  const int64_t S = scene.dim(0), g = S / kCellSide;
  OCELLUS_CHECK(scene.shape().ndim == 3 && scene.dim(1) == S && scene.dim(2) == 1 && S % kCellSide == 0 && g >= 1,
                "eval-fusion: a scene of shape ", scene.shape().str(), "; cells are cut from [S, S, 1], S a multiple of ", kCellSide);
  const Tensor s = scene.contiguous();
  Tensor cells = Tensor::empty({g * g, kCellSide, kCellSide, 1});
  for (int64_t c = 0; c < g * g; ++c)
    for (int64_t y = 0; y < kCellSide; ++y)
      for (int64_t x = 0; x < kCellSide; ++x)
        cells.data<float>()[(c * kCellSide + y) * kCellSide + x] =
            s.data<float>()[((c / g) * kCellSide + y) * S + (c % g) * kCellSide + x];
  return cells;
}

std::vector<double> cell_means(const Tensor& cells) {
  const int64_t n = cells.dim(0), per = cells.numel() / std::max<int64_t>(n, 1);
  const Tensor t = cells.contiguous();
  std::vector<double> out;
  for (int64_t c = 0; c < n; ++c) {
    double s = 0;
    for (int64_t i = 0; i < per; ++i) s += std::clamp((double(t.data<float>()[c * per + i]) + 1.0) * 127.5, 0.0, 255.0);
    out.push_back(s / double(per));
  }
  return out;
}

CellTally& CellTally::operator+=(const CellTally& o) {
  filled += o.filled, filled_right += o.filled_right, empty += o.empty, empty_right += o.empty_right;
  return *this;
}

CellTally score_cells(const Tensor& cells, const std::vector<int>& wanted, const CellJudge& judge, double empty_below) {
  OCELLUS_CHECK(int64_t(wanted.size()) == cells.dim(0), "eval-fusion: ", wanted.size(), " cells asked for, ", cells.dim(0), " drawn");
  const std::vector<int> judged = judge.classify(cells);
  const std::vector<double> means = cell_means(cells);
  CellTally t;
  for (size_t c = 0; c < wanted.size(); ++c) {
    // The judge has no class for nothing: a filled cell must also not be empty.
    if (wanted[c] >= 0) ++t.filled, t.filled_right += judged[c] == wanted[c] && means[c] >= empty_below;
    else ++t.empty, t.empty_right += means[c] < empty_below;
  }
  return t;
}

EmptyThreshold empty_threshold(const std::vector<Tensor>& cells, const std::vector<std::vector<int>>& wanted) {
  EmptyThreshold e;
  e.item_min = std::numeric_limits<double>::infinity();
  for (size_t s = 0; s < cells.size(); ++s) {
    const std::vector<double> m = cell_means(cells[s]);
    for (size_t c = 0; c < m.size(); ++c) {
      if (wanted[s][c] >= 0) e.item_min = std::min(e.item_min, m[c]);
      else e.empty_max = std::max(e.empty_max, m[c]);
    }
  }
  OCELLUS_CHECK(e.item_min < std::numeric_limits<double>::infinity(), "eval-fusion: no real scene holds an item");
  e.threshold = e.item_min / 2;
  return e;
}

FidPair fid_by_halves(const Tensor& generated, const Tensor& real, int64_t n_scenes) {
  OCELLUS_CHECK(n_scenes >= 2 && real.dim(0) % n_scenes == 0 && generated.shape() == real.shape(), "eval-fusion: FID of ",
                generated.shape().str(), " against ", real.shape().str(), " features of ", n_scenes, " scenes");
  const int64_t k = real.dim(0) / n_scenes, first = n_scenes / 2 * k;
  FidPair f;
  f.first_cells = first, f.second_cells = real.dim(0) - first;
  const Tensor real_second = real.slice(0, first, real.dim(0)).contiguous();
  f.generated = frechet_distance(generated.slice(0, 0, first).contiguous(), real_second);
  f.floor = frechet_distance(real.slice(0, 0, first).contiguous(), real_second);
  return f;
}

std::vector<TestScene> read_test_scenes(const std::string& path, const std::string& image_dir, int64_t n) {
  OCELLUS_CHECK(io::is_file(path), "eval-fusion: --data ", path, " does not exist");
  const std::vector<data::Record> records = data::read_llava_json(path, data::OnBad::Fail);
  OCELLUS_CHECK(n == 0 || n <= int64_t(records.size()), "eval-fusion: --scenes ", n, " but ", path, " holds ", records.size());
  if (n == 0) n = int64_t(records.size());
  OCELLUS_CHECK(n >= 2, "eval-fusion: ", n, " scene(s); FID's two halves need at least 2 (", path, ")");
  std::vector<TestScene> out;
  for (int64_t i = 0; i < n; ++i) {
    const data::Record& r = records[size_t(i)];
    const std::string rec = path + ": record " + std::to_string(i) + " (" + r.id + ")";
    OCELLUS_CHECK(!r.image.empty(), rec, ": no image");
    const auto reply = std::find_if(r.messages.rbegin(), r.messages.rend(), [](const text::Message& m) { return m.role == "assistant"; });
    OCELLUS_CHECK(reply != r.messages.rend(), rec, ": no caption (a gpt reply)");
    const std::string file = image_dir.empty() ? r.image : image_dir + "/" + r.image;
    OCELLUS_CHECK(io::is_file(file), rec, ": the picture ", file, " does not exist (--images names the folder it is relative to)");
    TestScene s{r.image, reply->content, {}, scene_tensor(io::load_image(file), file)};
    const int grid = int(s.picture.dim(0) / kCellSide);
    OCELLUS_CHECK(out.empty() || s.picture.shape() == out[0].picture.shape(), rec, ": a picture of ", s.picture.dim(0),
                  " px among scenes of ", out[0].picture.dim(0));
    const auto cells = data::parse_fashion_caption(s.caption, grid);
    OCELLUS_CHECK(cells.has_value(), rec, ": '", s.caption, "' is not a fashion-vqa caption of a ", grid, "x", grid, " grid");
    s.cells = *cells;
    out.push_back(std::move(s));
  }
  return out;
}

namespace {

// The judge's accuracy on labelled photos.
double photo_accuracy(const CellJudge& judge, const data::FashionSplit& s) {
  Tensor photos = Tensor::empty({s.n, kCellSide, kCellSide, 1});
  for (size_t i = 0; i < s.pixels.size(); ++i) photos.data<float>()[i] = float(s.pixels[i]) / 127.5f - 1.0f;
  const std::vector<int> judged = judge.classify(photos);
  int64_t right = 0;
  for (int64_t i = 0; i < s.n; ++i) right += judged[size_t(i)] == int(s.labels[size_t(i)]);
  return double(right) / double(std::max<int64_t>(s.n, 1));
}

}  // namespace

FusionEvalReport evaluate_fusion(const FusionEvalOptions& o) {
  // Every input first.
  std::vector<TestScene> scenes = read_test_scenes(o.data, o.images, o.scenes);
  const CnnJudge judge(o.judge);
  std::optional<data::FashionSplit> photos;
  if (!o.photos.empty()) photos = data::read_fashion_split(o.photos, o.labels);
  const gen::FusionModel m(o.model);
  const int64_t S = scenes[0].picture.dim(0), N = int64_t(scenes.size());
  OCELLUS_CHECK(m.vae_config().sample_size == S && m.vae_config().in_channels == 1, "eval-fusion: ", o.model, " draws ",
                m.vae_config().sample_size, " px images of ", m.vae_config().in_channels, " channel(s); the scenes of ", o.data,
                " are ", S, " px grey");
  const int64_t ctx = m.lm().config().n_ctx;
  for (const TestScene& s : scenes) {
    const int64_t n = int64_t(gen::caption_before(m.tokenizer(), s.caption).size());
    OCELLUS_CHECK(ctx <= 0 || n + 1 + m.image_rows() <= ctx, "eval-fusion: the caption '", s.caption, "' is ", n,
                  " tokens; with the image's ", 1 + m.image_rows(), " positions it exceeds the model's context of ", ctx);
  }
  OCELLUS_CHECK(ctx <= 0 || 2 + m.image_rows() + o.max_tokens <= ctx, "eval-fusion: an image's ", 2 + m.image_rows(),
                " positions and ", o.max_tokens, " tokens of caption exceed the model's context of ", ctx);

  FusionEvalReport r;
  r.scenes = N, r.grid = int(S / kCellSide), r.sampling = o.sampling;
  if (photos) r.judge_photo_accuracy = photo_accuracy(judge, *photos), r.judge_photos = photos->n;

  // The real scenes: the threshold, the judge's ceiling, their features.
  std::vector<Tensor> real_cells;
  std::vector<std::vector<int>> wanted;
  for (const TestScene& s : scenes) real_cells.push_back(scene_cells(s.picture)), wanted.push_back(s.cells);
  r.threshold = empty_threshold(real_cells, wanted);
  for (int64_t i = 0; i < N; ++i) r.real += score_cells(real_cells[size_t(i)], wanted[size_t(i)], judge, r.threshold.threshold);

  // Drawing: one scene per caption, seed + its index.
  std::vector<Tensor> drawn_cells;
  {
    ProgressLine progress;
    const auto t0 = std::chrono::steady_clock::now();
    double done_s = 0;  // the scenes drawn so far
    for (int64_t i = 0; i < N; ++i) {
      gen::ImageSampling s = o.sampling;
      s.seed = o.sampling.seed + uint64_t(i);
      Tensor img = gen::generate_image(m, scenes[size_t(i)].caption, s, [&](int64_t step, int64_t steps) {
        char line[160];
        std::snprintf(line, sizeof line, "eval-fusion: drawing scene %lld/%lld, step %lld/%lld, %.2f s/scene", (long long)(i + 1),
                      (long long)N, (long long)step, (long long)steps, i ? done_s / double(i) : 0.0);
        progress.update(i * steps + step, N * steps, line);
      });
      // As a picture holds it: [-1, 1].
      for (int64_t p = 0; p < img.numel(); ++p) img.data<float>()[p] = std::clamp(img.data<float>()[p], -1.0f, 1.0f);
      drawn_cells.push_back(scene_cells(img));
      FusionEvalReport::Scene ps;
      ps.test = scenes[size_t(i)];
      ps.judged = judge.classify(drawn_cells.back());
      ps.means = cell_means(drawn_cells.back());
      r.generated += score_cells(drawn_cells.back(), wanted[size_t(i)], judge, r.threshold.threshold);
      r.per_scene.push_back(std::move(ps));
      done_s = seconds_since(t0);
    }
    r.generate_s = seconds_since(t0);
  }
  r.fid = fid_by_halves(judge.features(stack(drawn_cells)), judge.features(stack(real_cells)), N);

  // Reading: the model's caption of each real scene.
  {
    ProgressLine progress;
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < N; ++i) {
      FusionEvalReport::Scene& ps = r.per_scene[size_t(i)];
      ps.description = trimmed(gen::describe_image(m, scenes[size_t(i)].picture, o.max_tokens));
      r.exact_captions += ps.description == ps.test.caption;
      const auto cells = data::parse_fashion_caption(ps.description, r.grid);
      r.unparsed_captions += !cells.has_value();
      for (size_t c = 0; c < ps.test.cells.size(); ++c) ps.description_cells_right += cells && (*cells)[c] == ps.test.cells[c];
      r.cells_right += ps.description_cells_right, r.cells += int64_t(ps.test.cells.size());
      char line[128];
      std::snprintf(line, sizeof line, "eval-fusion: describing scene %lld/%lld, %.2f s/scene", (long long)(i + 1), (long long)N,
                    seconds_since(t0) / double(i + 1));
      progress.update(i + 1, N, line);
    }
    r.describe_s = seconds_since(t0);
  }

  // Language: the captions as text alone, the model's text path against its base file.
  {
    const io::GgufFile g = io::GgufFile::open(m.base_path());
    const std::unique_ptr<lm::LanguageModel> base = lm::load_gguf(g);
    std::vector<std::vector<int32_t>> texts;
    for (const TestScene& s : scenes) {
      texts.push_back(gen::caption_after(m.tokenizer(), s.caption));
      const std::vector<int32_t>& ids = texts.back();
      lm::KvCache a = m.cache(int64_t(ids.size())), b(base->config(), int64_t(ids.size()), DType::F32);
      const Tensor la = m.lm().forward_ids(ids, a, true), lb = base->forward_ids(ids, b, true);
      r.texts_identical += la.shape() == lb.shape() && std::memcmp(la.raw(), lb.raw(), size_t(la.nbytes())) == 0;
    }
    r.texts = int64_t(texts.size());
    r.text_model = text_perplexity(m.lm(), texts), r.text_base = text_perplexity(*base, texts);
  }
  return r;
}

std::string format_fusion_report(const FusionEvalReport& r) {
  std::string out;
  auto line = [&](const char* fmt, auto... args) {
    char buf[256];
    std::snprintf(buf, sizeof buf, fmt, args...);
    out += buf;
  };
  const double n = double(r.scenes);
  line("eval-fusion: %lld scenes, %lld %s steps, guidance %.1f, seeds %llu..%llu\n", (long long)r.scenes, (long long)r.sampling.steps,
       r.sampling.ddpm ? "DDPM" : "DDIM", double(r.sampling.cfg), (unsigned long long)r.sampling.seed,
       (unsigned long long)(r.sampling.seed + uint64_t(r.scenes) - 1));
  if (r.judge_photo_accuracy)
    line("judge: %.2f%% of %lld Fashion-MNIST test photos classed right\n", 100 * *r.judge_photo_accuracy, (long long)r.judge_photos);
  line("empty cells: real empty cells' mean pixel <= %.2f, real items' >= %.2f: empty below %.2f (half the dimmest item)\n\n",
       r.threshold.empty_max, r.threshold.item_min, r.threshold.threshold);
  line("%-34s %10s %12s %8s\n", "faithfulness (cells)", "generated", "real scenes", "target");
  line("%-34s %9.2f%% %11.2f%% %8s\n", "filled: the requested item", 100 * r.generated.filled_rate(), 100 * r.real.filled_rate(), ">= 80%");
  line("%-34s %9.2f%% %11.2f%% %8s\n", "empty: left empty", 100 * r.generated.empty_rate(), 100 * r.real.empty_rate(), ">= 95%");
  line("%-34s %10lld %12lld\n", "  filled cells", (long long)r.generated.filled, (long long)r.real.filled);
  line("%-34s %10lld %12lld\n\n", "  empty cells", (long long)r.generated.empty, (long long)r.real.empty);
  line("FID (judge features, one cell a sample): generated %.3f, floor real vs real %.3f (%lld vs %lld cells)\n",
       r.fid.generated, r.fid.floor, (long long)r.fid.first_cells, (long long)r.fid.second_cells);
  line("understanding: exact captions %.2f%%, cells right %.2f%% (%lld captions unreadable as a scene)\n",
       100 * double(r.exact_captions) / n, r.cells ? 100 * double(r.cells_right) / double(r.cells) : 0.0, (long long)r.unparsed_captions);
  line("language: caption perplexity as text alone %.4f (base model %.4f); logits bit-identical to the base on %lld of %lld captions\n",
       r.text_model.ppl, r.text_base.ppl, (long long)r.texts_identical, (long long)r.texts);
  line("time: drawing %.3f s/scene, describing %.3f s/scene\n", r.generate_s / n, r.describe_s / n);
  return out;
}

std::string fusion_report_json(const FusionEvalReport& r) {
  using nlohmann::json;
  auto tally = [](const CellTally& t) {
    return json{{"filled_cells", t.filled}, {"filled_right", t.filled_right}, {"filled_rate", t.filled_rate()},
                {"empty_cells", t.empty}, {"empty_right", t.empty_right}, {"empty_rate", t.empty_rate()}};
  };
  json j = {{"scenes", r.scenes},
            {"sampling", {{"steps", r.sampling.steps}, {"cfg", r.sampling.cfg}, {"seed", r.sampling.seed}, {"ddpm", r.sampling.ddpm}}},
            {"empty_threshold", {{"real_empty_max", r.threshold.empty_max}, {"real_item_min", r.threshold.item_min}, {"threshold", r.threshold.threshold}}},
            {"faithfulness", {{"generated", tally(r.generated)}, {"real", tally(r.real)}}},
            {"fid", {{"generated_vs_real", r.fid.generated}, {"real_vs_real", r.fid.floor}, {"first_half_cells", r.fid.first_cells},
                     {"second_half_cells", r.fid.second_cells}}},
            {"understanding", {{"exact_captions", r.exact_captions}, {"exact_rate", double(r.exact_captions) / double(r.scenes)},
                               {"cells_right", r.cells_right}, {"cells", r.cells},
                               {"cell_rate", r.cells ? double(r.cells_right) / double(r.cells) : 0.0},
                               {"unparsed_captions", r.unparsed_captions}}},
            {"language", {{"perplexity", r.text_model.ppl}, {"base_perplexity", r.text_base.ppl}, {"tokens", r.text_model.tokens},
                          {"captions", r.texts}, {"bit_identical_to_base", r.texts_identical}}},
            {"seconds_per_scene", {{"drawing", r.generate_s / double(r.scenes)}, {"describing", r.describe_s / double(r.scenes)}}}};
  if (r.judge_photo_accuracy) j["judge_photo_accuracy"] = *r.judge_photo_accuracy, j["judge_photos"] = r.judge_photos;
  json scenes = json::array();
  for (const auto& s : r.per_scene) {
    json asked = json::array(), drawn = json::array();
    for (size_t c = 0; c < s.test.cells.size(); ++c) {
      asked.push_back(cell_word(s.test.cells[c]));
      drawn.push_back({{"judged", cell_word(s.judged[c])}, {"mean", s.means[c]}, {"empty", s.means[c] < r.threshold.threshold}});
    }
    scenes.push_back({{"image", s.test.image}, {"caption", s.test.caption}, {"cells", asked}, {"drawn", drawn},
                      {"description", s.description}, {"description_cells_right", s.description_cells_right}});
  }
  j["per_scene"] = scenes;
  // A model's caption may hold bytes that are no UTF-8 (a piece of a character): shown as U+FFFD.
  return j.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace ocellus::eval
