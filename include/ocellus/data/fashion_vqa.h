#pragma once
// `ocellus data fashion-vqa`: a visual question-answering dataset built from Debian's
// dataset-fashion-mnist (70,000 real 28x28 grayscale product photos, 10 classes, the standard
// 60k / 10k split). Each scene places 1-4 items on a grid of 28-pixel cells; from it come a
// caption ("a sneaker in the top left and a bag in the bottom right"), a multi-turn instruction
// conversation (what is in a cell, where an item is, how many of a kind, yes/no questions about
// present and absent items with adversarial negatives from look-alike classes, a description),
// and evaluation questions with their category. Training scenes use only the 60k training
// photos, evaluation scenes only the 10k test photos. Deterministic in the seed; images are PNG
// files beside LLaVA-format JSON, readable by other tools.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ocellus::data {

// The photos and labels of one split (IDX files, gzipped or not).
struct FashionSplit {
  int64_t n = 0;
  std::vector<uint8_t> pixels;  // [n, 28, 28]
  std::vector<uint8_t> labels;  // [n], 0..9
};
FashionSplit read_fashion_split(const std::string& images_idx, const std::string& labels_idx);

const std::vector<std::string>& fashion_class_names();  // "t-shirt", "trouser", ... "ankle boot"

// A scene's caption from the class in each cell (row-major: top left, top right, ...; -1:
// empty), as every file writes it: "a trouser in the top left, a sneaker in the top right and an
// ankle boot in the bottom right" (the filled cells in order, "a" / "an", ", " between items and
// " and " before the last).
std::string fashion_caption(const std::vector<int>& class_of_cell, int grid);
// Its inverse: the class in each cell (-1: empty), or nullopt when `caption` is not what
// fashion_caption writes for a scene of at least one item (a model's caption may be anything).
std::optional<std::vector<int>> parse_fashion_caption(const std::string& caption, int grid);

struct FashionVqaOptions {
  std::string source = "/usr/share/datasets/fashion-mnist";
  std::string out;
  int64_t train_scenes = 20000, test_scenes = 1000;
  // Validation scenes: from the training photos that no training scene uses (about 43% of them
  // at 20,000 scenes), so a recipe can be chosen without looking at the test scenes. 0: none.
  int64_t val_scenes = 0;
  // How training scenes pick their photos. false: each uniformly from the 60k, with repeats (at
  // 20,000 scenes about 34k distinct photos are shown). true: from a shuffled deck of them, each
  // once before any repeats (about 50k distinct at 20,000 scenes), so the same number of scenes
  // shows more distinct photos. Only which photo fills a cell changes: the layouts (how many
  // items, which cells) and the test scenes are the same either way.
  bool photo_deck = false;
  int grid = 2;          // cells per side (2: top left ... bottom right; 3 adds middle / centre)
  int max_items = 4;
  uint64_t seed = 1;
};

struct FashionVqaStats {
  int64_t train_scenes = 0, test_scenes = 0, eval_questions = 0, val_scenes = 0, val_questions = 0;
  int64_t train_photos = 0;  // the distinct training photos the training scenes show
  int64_t val_photos = 0;  // the training photos no training scene shows, from which validation scenes draw
};

// Writes out/images/{train,test}/NNNNNN.png, out/train_captions.json, out/train_instruct.json
// (LLaVA conversations: per training scene one multi-turn conversation, then each of its
// questions as a single-turn record), out/train_instruct_contrast.json (the same, plus where a
// scene allows a count of a present kind and one of an absent look-alike of it), out/train_read.json
// (each training conversation of train_instruct.json as text only, its first question after the
// scene's description in words instead of the picture: reading comprehension for the language
// model's pretraining), out/train_text.txt (their text, for a vocabulary), out/test_captions.json,
// out/test_instruct.json and out/test_eval.json ([{question_id, image, question, answer, category}]);
// with val_scenes, also out/images/val/NNNNNN.png, out/val_captions.json, out/val_instruct.json and
// out/val_eval.json, built as the test files are, from held-out training photos. Every other file
// is the same with or without them.
FashionVqaStats build_fashion_vqa(const FashionVqaOptions& o);

}  // namespace ocellus::data
