#pragma once
// `ocellus eval-fusion`: how well a LlamaFusion model (gen/fusion_model.h) draws and reads
// fashion-vqa scenes (data/fashion_vqa.h: a grid of 28-px cells, each empty or holding one
// Fashion-MNIST photo), judged cell by cell by a CNN trained on the photos
// (vision/cnn_classifier.h).
// - Faithfulness (GenEval-style): one scene drawn per test caption; a cell the caption fills is
//   right when the judge names the requested class (and it is not empty), a cell it leaves empty
//   when its mean pixel is below a threshold. The same on the real scenes is the judge's ceiling.
// - FID (eval/fid.h) on the judge's features, each cell one sample: the drawn scenes of the
//   first half of the captions against the real scenes of the second half, and the floor, the
//   real first half against the real second half (no photo on both sides).
// - Understanding: the model's caption of each real scene, exact and cell by cell.
// - Language preserved: the captions as text alone, the model's text path against its base
//   model file: perplexity, and whether every logit is bit-identical.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ocellus/core/tensor.h"
#include "ocellus/eval/perplexity.h"
#include "ocellus/gen/fusion_model.h"
#include "ocellus/io/image.h"
#include "ocellus/nn/forward.h"
#include "ocellus/vision/cnn_classifier.h"

namespace ocellus::io {
class SafetensorsModel;
}

namespace ocellus::eval {

constexpr int64_t kCellSide = 28;  // a Fashion-MNIST photo: one cell of a scene

// Judges cells [n, 28, 28, 1] in [-1, 1]: a class each, and the features FID is computed on.
class CellJudge {
 public:
  virtual ~CellJudge() = default;
  virtual std::vector<int> classify(const Tensor& cells) const = 0;
  virtual Tensor features(const Tensor& cells) const = 0;  // [n, d]
};

// A classifier folder written by the "classifier" training objective (config.json,
// model.safetensors); a folder that is not one (missing files, another model's config, a
// classifier of other images than 28x28 grey photos) is one error naming it.
class CnnJudge final : public CellJudge {
 public:
  explicit CnnJudge(const std::string& dir);
  ~CnnJudge() override;
  std::vector<int> classify(const Tensor& cells) const override;  // argmax of the logits
  Tensor features(const Tensor& cells) const override;

 private:
  vision::CnnConfig c_;
  std::unique_ptr<io::SafetensorsModel> st_;
  vision::CnnClassifier<nn::Infer> w_;
};

// A scene's picture (grey, stored as RGB) as [S, S, 1] in [-1, 1].
Tensor scene_tensor(const io::ImageRgb8& img, const std::string& name);
// A scene [S, S, 1] (S a multiple of 28) cut into its cells [g * g, 28, 28, 1], row-major: top
// left, top right, ...
Tensor scene_cells(const Tensor& scene);
// Each cell's mean pixel value on 0..255 ((v + 1) * 127.5, clamped as a PNG would hold it).
std::vector<double> cell_means(const Tensor& cells);

struct CellTally {
  int64_t filled = 0, filled_right = 0;  // cells the caption fills; those holding the class it asks for
  int64_t empty = 0, empty_right = 0;    // cells it leaves empty; those below the threshold
  double filled_rate() const { return filled ? double(filled_right) / double(filled) : 0.0; }
  double empty_rate() const { return empty ? double(empty_right) / double(empty) : 0.0; }
  CellTally& operator+=(const CellTally& o);
};
// One scene's cells against its caption's cells (a class each, -1: empty): a filled cell is right
// when the judge names its class and it is not empty (the judge has no class for nothing), an
// empty cell when its mean is below empty_below.
CellTally score_cells(const Tensor& cells, const std::vector<int>& wanted, const CellJudge& judge, double empty_below);

// What separates an empty cell from an item on real scenes: the brightest empty cell's mean
// (0: they are black), the dimmest item cell's mean, and the threshold between them, half of
// the dimmest item's mean (a drawn cell dimmer than any real item by half is empty).
struct EmptyThreshold {
  double empty_max = 0, item_min = 0, threshold = 0;
};
// cells: [g * g, 28, 28, 1] per real scene; wanted: its caption's cells. Needs an item cell.
EmptyThreshold empty_threshold(const std::vector<Tensor>& cells, const std::vector<std::vector<int>>& wanted);

// FID on features [N * k, d] of N scenes' cells (k per scene, scenes in order), split at N / 2:
// generated's first half against real's second half, and the floor, real's first half against
// real's second half. N >= 2.
struct FidPair {
  double generated = 0, floor = 0;
  int64_t first_cells = 0, second_cells = 0;
};
FidPair fid_by_halves(const Tensor& generated, const Tensor& real, int64_t n_scenes);

// A test scene: its picture file and caption, the caption's cells, the picture [S, S, 1].
struct TestScene {
  std::string image, caption;
  std::vector<int> cells;
  Tensor picture;
};
// The first n scenes (0: all) of a captions file (LLaVA JSON: the picture relative to image_dir,
// the caption the last gpt reply); their pictures all of one size, the grid their side / 28. A
// missing picture, or a caption that is not a fashion-vqa caption, is an error naming the
// record; fewer than 2 scenes is an error (FID needs two halves).
std::vector<TestScene> read_test_scenes(const std::string& path, const std::string& image_dir, int64_t n);

struct FusionEvalOptions {
  std::string model, judge, data, images;
  int64_t scenes = 0;  // 0: all
  gen::ImageSampling sampling;
  std::string photos, labels;  // Fashion-MNIST's test photos for the judge's accuracy; empty: skipped
  int64_t max_tokens = 64;     // per caption the model writes
};

struct FusionEvalReport {
  int64_t scenes = 0;
  int grid = 2;
  gen::ImageSampling sampling;
  std::optional<double> judge_photo_accuracy;
  int64_t judge_photos = 0;
  EmptyThreshold threshold;
  CellTally generated, real;  // faithfulness
  FidPair fid;
  int64_t exact_captions = 0, cells_right = 0, cells = 0, unparsed_captions = 0;  // understanding
  double generate_s = 0, describe_s = 0;  // seconds in all
  // Language preserved: the test captions as text alone (each its own sequence, ending with the
  // end-of-sequence token) through the model's text path and through its base model file.
  Perplexity text_model, text_base;
  int64_t texts = 0, texts_identical = 0;  // captions whose every logit is bit-identical to the base's
  struct Scene {
    TestScene test;
    std::vector<int> judged;       // the drawn scene's cells as the judge classes them
    std::vector<double> means;     // and their means (0..255)
    std::string description;       // the model's caption of the real scene
    int64_t description_cells_right = 0;
  };
  std::vector<Scene> per_scene;
};

// The whole evaluation; every input is checked (one clear error each) before the model draws.
// Progress on stderr.
FusionEvalReport evaluate_fusion(const FusionEvalOptions& o);
std::string format_fusion_report(const FusionEvalReport& r);
std::string fusion_report_json(const FusionEvalReport& r);

}  // namespace ocellus::eval
