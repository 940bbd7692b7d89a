// eval-fusion (eval/fusion_eval.h): cells cut from scenes, the cell scores on hand-made scenes
// with a judge that knows the photo, the empty threshold, FID's two halves on synthetic
// features, the classifier folder as a judge, the test scenes read and checked, a whole run on
// tiny random models through the CLI (the report agrees with itself and with the parts), and
// the input errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "cliutil.h"
#include "ocellus/core/error.h"
#include "ocellus/data/fashion_vqa.h"
#include "ocellus/eval/fid.h"
#include "ocellus/eval/fusion_eval.h"
#include "ocellus/gen/fusion_model.h"
#include "ocellus/io/file.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/image.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/model/synth.h"
#include "ocellus/ops/shape.h"
#include "testutil.h"
#include "torch_ref.h"

using namespace ocellus;
using namespace ocellus::test;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kSide = eval::kCellSide;

float to_unit(double pixel) { return float(pixel / 127.5 - 1.0); }

// A hand-made item photo [28, 28, 1]: an ellipse of pixels 120..250 on black (a real photo's
// look: a bright object, a dark background).
Tensor item_photo(uint32_t seed) {
  std::mt19937 rng(seed);
  Tensor t = Tensor::zeros({kSide, kSide, 1});
  for (int64_t y = 0; y < kSide; ++y)
    for (int64_t x = 0; x < kSide; ++x) {
      const double dy = (double(y) - 13.5) / 12, dx = (double(x) - 13.5) / 8;
      t.data<float>()[y * kSide + x] = to_unit(dy * dy + dx * dx <= 1 ? 120 + double(rng() % 131) : 0);
    }
  return t;
}

// A scene of g x g cells, black, with `photos[c]` in cell c where defined.
Tensor scene_of(int64_t g, const std::vector<Tensor>& photos) {
  const int64_t S = g * kSide;
  Tensor s = Tensor::empty({S, S, 1});
  for (int64_t i = 0; i < s.numel(); ++i) s.data<float>()[i] = -1.0f;
  for (size_t c = 0; c < photos.size(); ++c)
    if (photos[c].defined())
      for (int64_t y = 0; y < kSide; ++y)
        for (int64_t x = 0; x < kSide; ++x)
          s.data<float>()[((int64_t(c) / g) * kSide + y) * S + (int64_t(c) % g) * kSide + x] = photos[c].data<float>()[y * kSide + x];
  return s;
}

// A judge that knows one photo: it is class kLabel, any other cell class `other`. No features.
constexpr int kLabel = 7;
struct PhotoJudge final : eval::CellJudge {
  Tensor photo;
  int other = kLabel + 1;
  std::vector<int> classify(const Tensor& cells) const override {
    std::vector<int> out;
    for (int64_t c = 0; c < cells.dim(0); ++c)
      out.push_back(max_abs_diff(cells.slice(0, c, c + 1).contiguous().reshape({kSide, kSide, 1}), photo) == 0 ? kLabel : other);
    return out;
  }
  Tensor features(const Tensor& cells) const override { return Tensor::zeros({cells.dim(0), 2}); }
};

// Uniform noise [28, 28, 1] of pixels 0..2 * mean (so its mean is about `mean`).
Tensor noise_cell(double mean, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 2 * mean);
  Tensor t = Tensor::empty({kSide, kSide, 1});
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = to_unit(u(rng));
  return t;
}

// A tiny classifier folder of 28 px grey photos (random weights) and its config.
vision::CnnConfig write_judge(const std::string& dir) {
  vision::CnnConfig c;
  c.widths = {4, 8}, c.n_features = 6, c.norm_num_groups = 2;
  std::vector<ag::Var> params;
  vision::load_cnn_classifier(nn::new_param_maker(params, 11), c);
  perturb(params, 400, 0.3f);
  fs::create_directories(dir);
  io::write_text_file_atomically(dir + "/config.json", vision::cnn_config_json(c));
  io::write_safetensors(dir + "/model.safetensors", ag::named_values(params));
  return c;
}

// PNG scenes and their captions file (LLaVA records, as `ocellus data fashion-vqa` writes them)
// in dir: scene i holds item_photo(10 * i + c) in each cell its layout fills.
void write_scenes(const std::string& dir, const std::vector<std::vector<int>>& layouts) {
  fs::create_directories(dir + "/images/test");
  nlohmann::json recs = nlohmann::json::array();
  for (size_t i = 0; i < layouts.size(); ++i) {
    const int64_t g = layouts[i].size() == 9 ? 3 : 2;
    std::vector<Tensor> photos(layouts[i].size());
    for (size_t c = 0; c < photos.size(); ++c)
      if (layouts[i][c] >= 0) photos[c] = item_photo(uint32_t(10 * i + c));
    const Tensor s = scene_of(g, photos);
    io::ImageRgb8 img;
    img.width = img.height = int(g * kSide);
    for (int64_t p = 0; p < s.numel(); ++p) img.rgb.insert(img.rgb.end(), 3, uint8_t(std::lround((s.data<float>()[p] + 1) * 127.5)));
    const std::string file = "images/test/" + std::to_string(i) + ".png";
    io::save_png(dir + "/" + file, img);
    recs.push_back({{"id", "test-" + std::to_string(i)}, {"image", file},
                    {"conversations", {{{"from", "human"}, {"value", "<image>\nDescribe the picture briefly."}},
                                       {{"from", "gpt"}, {"value", data::fashion_caption(layouts[i], int(g))}}}}});
  }
  io::write_text_file_atomically(dir + "/test_captions.json", recs.dump(1));
}

std::string fresh_dir(const std::string& name) {
  const std::string d = temp_path(name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

}  // namespace

TEST(FusionEval, CellsAreCutRowMajorAndMeasuredOnThePixelScale) {
  for (int64_t g : {2, 3}) {
    std::vector<Tensor> photos;
    for (int64_t c = 0; c < g * g; ++c) {
      Tensor p = Tensor::empty({kSide, kSide, 1});
      for (int64_t i = 0; i < p.numel(); ++i) p.data<float>()[i] = to_unit(double(10 * (c + 1) + i % 3));  // mean 10 (c + 1) + 1 - 1/784
      photos.push_back(p);
    }
    const Tensor cells = eval::scene_cells(scene_of(g, photos));
    ASSERT_EQ(cells.shape(), Shape({g * g, kSide, kSide, 1}));
    const std::vector<double> means = eval::cell_means(cells);
    for (int64_t c = 0; c < g * g; ++c) {
      EXPECT_EQ(max_abs_diff(cells.slice(0, c, c + 1).contiguous().reshape({kSide, kSide, 1}), photos[size_t(c)]), 0) << c;
      EXPECT_NEAR(means[size_t(c)], double(10 * (c + 1)) + 1 - 1.0 / 784, 1e-4) << c;
    }
  }
  // Values past [-1, 1] count as a picture holds them: 255 at most, 0 at least.
  Tensor over = Tensor::empty({1, kSide, kSide, 1});
  for (int64_t i = 0; i < over.numel(); ++i) over.data<float>()[i] = 1.5f;
  EXPECT_DOUBLE_EQ(eval::cell_means(over)[0], 255.0);
  for (int64_t i = 0; i < over.numel(); ++i) over.data<float>()[i] = -1.5f;
  EXPECT_DOUBLE_EQ(eval::cell_means(over)[0], 0.0);
  EXPECT_THROW(eval::scene_cells(Tensor::zeros({50, 50, 1})), Error);
}

TEST(FusionEval, APhotoInTheRightCellScoresAndInTheWrongCellDoesNot) {
  PhotoJudge judge;
  judge.photo = item_photo(1);
  const std::vector<int> wanted = {kLabel, -1, -1, -1};  // "a sneaker in the top left"
  const double threshold = 10;
  const eval::CellTally right = eval::score_cells(eval::scene_cells(scene_of(2, {judge.photo})), wanted, judge, threshold);
  EXPECT_EQ(right.filled, 1);
  EXPECT_EQ(right.filled_right, 1);
  EXPECT_EQ(right.empty, 3);
  EXPECT_EQ(right.empty_right, 3);
  // In the top right: the top left is black (not the item), the top right not empty.
  const eval::CellTally wrong = eval::score_cells(eval::scene_cells(scene_of(2, {Tensor(), judge.photo})), wanted, judge, threshold);
  EXPECT_EQ(wrong.filled, 1);
  EXPECT_EQ(wrong.filled_right, 0);
  EXPECT_EQ(wrong.empty, 3);
  EXPECT_EQ(wrong.empty_right, 2);
  // A judge that calls a black cell the item too: an empty cell is still not the item.
  PhotoJudge credulous = judge;
  credulous.other = kLabel;
  EXPECT_EQ(eval::score_cells(eval::scene_cells(scene_of(2, {Tensor(), judge.photo})), wanted, credulous, threshold).filled_right, 0);
  EXPECT_EQ(eval::score_cells(eval::scene_cells(scene_of(2, {item_photo(2)})), wanted, credulous, threshold).filled_right, 1);
  // Another photo where the item should be: classed otherwise.
  const eval::CellTally other = eval::score_cells(eval::scene_cells(scene_of(2, {item_photo(2)})), wanted, judge, threshold);
  EXPECT_EQ(other.filled_right, 0);
  EXPECT_EQ(other.empty_right, 3);
  eval::CellTally sum = right;
  sum += wrong;
  EXPECT_EQ(sum.filled, 2);
  EXPECT_EQ(sum.filled_right, 1);
  EXPECT_DOUBLE_EQ(sum.filled_rate(), 0.5);
  EXPECT_DOUBLE_EQ(sum.empty_rate(), 5.0 / 6.0);
  EXPECT_THROW(eval::score_cells(eval::scene_cells(scene_of(2, {})), {kLabel, -1}, judge, threshold), Error);
}

TEST(FusionEval, AnEmptyCellIsEmptyWhenItsMeanIsBelowTheThreshold) {
  PhotoJudge judge;
  judge.photo = item_photo(1);
  const double threshold = 12;
  const Tensor dim = noise_cell(8, 5), bright = noise_cell(16, 6);
  const Tensor cells_dim = eval::scene_cells(scene_of(2, {judge.photo, dim}));
  const Tensor cells_bright = eval::scene_cells(scene_of(2, {judge.photo, bright}));
  ASSERT_LT(eval::cell_means(cells_dim)[1], threshold);
  ASSERT_GT(eval::cell_means(cells_bright)[1], threshold);
  const std::vector<int> wanted = {kLabel, -1, -1, -1};
  EXPECT_EQ(eval::score_cells(cells_dim, wanted, judge, threshold).empty_right, 3);
  EXPECT_EQ(eval::score_cells(cells_bright, wanted, judge, threshold).empty_right, 2);
}

TEST(FusionEval, TheThresholdIsHalfTheDimmestRealItem) {
  const Tensor a = item_photo(1), b = item_photo(2);
  const std::vector<Tensor> cells = {eval::scene_cells(scene_of(2, {a, Tensor(), b})), eval::scene_cells(scene_of(2, {Tensor(), b}))};
  const double ma = eval::cell_means(cells[0])[0], mb = eval::cell_means(cells[0])[2];
  const eval::EmptyThreshold t = eval::empty_threshold(cells, {{1, -1, 2, -1}, {-1, 2, -1, -1}});
  EXPECT_EQ(t.empty_max, 0.0);
  EXPECT_DOUBLE_EQ(t.item_min, std::min(ma, mb));
  EXPECT_DOUBLE_EQ(t.threshold, std::min(ma, mb) / 2);
  // A caption that calls a photo's cell empty: the brightest "empty" cell shows it.
  EXPECT_DOUBLE_EQ(eval::empty_threshold(cells, {{1, -1, -1, -1}, {-1, 2, -1, -1}}).empty_max, mb);
  EXPECT_THROW(eval::empty_threshold({cells[0]}, {{-1, -1, -1, -1}}), Error);
}

TEST(FusionEval, FidComparesTheFirstHalfWithTheSecond) {
  const int64_t N = 41, k = 4, d = 3;  // odd: 20 scenes, then 21
  Tensor real = randn({N * k, d}, 3);
  // The second half's first 20 scenes a copy of the first half's, its last scene a copy of the first scene.
  for (int64_t r = 20 * k; r < N * k; ++r)
    for (int64_t j = 0; j < d; ++j) real.data<float>()[r * d + j] = real.data<float>()[((r - 20 * k) % (20 * k)) * d + j];
  const Tensor first = real.slice(0, 0, 20 * k).contiguous(), second = real.slice(0, 20 * k, N * k).contiguous();
  // The generated first half: the real one moved by delta; the later scenes are not read.
  Tensor generated = randn({N * k, d}, 9);
  const float delta[d] = {0.5f, -1.0f, 2.0f};
  for (int64_t r = 0; r < 20 * k; ++r)
    for (int64_t j = 0; j < d; ++j) generated.data<float>()[r * d + j] = real.data<float>()[r * d + j] + delta[j];
  const eval::FidPair f = eval::fid_by_halves(generated, real, N);
  EXPECT_EQ(f.first_cells, 20 * k);
  EXPECT_EQ(f.second_cells, 21 * k);
  EXPECT_DOUBLE_EQ(f.floor, eval::frechet_distance(first, second));
  // A shift of the first half's mean by delta: |mu1 + delta - mu2|^2 in place of |mu1 - mu2|^2,
  // the covariances' terms unchanged.
  double shifted = 0, plain = 0;
  for (int64_t j = 0; j < d; ++j) {
    double m1 = 0, m2 = 0;
    for (int64_t r = 0; r < 20 * k; ++r) m1 += first.data<float>()[r * d + j] / double(20 * k);
    for (int64_t r = 0; r < 21 * k; ++r) m2 += second.data<float>()[r * d + j] / double(21 * k);
    shifted += (m1 + delta[j] - m2) * (m1 + delta[j] - m2), plain += (m1 - m2) * (m1 - m2);
  }
  EXPECT_NEAR(f.generated - f.floor, shifted - plain, 1e-5);
  EXPECT_GT(shifted - plain, 5.0);
  // Identical halves: 0.
  Tensor twin = ops::concat({first, first}, 0);
  EXPECT_NEAR(eval::fid_by_halves(twin, twin, 40).floor, 0.0, 1e-6);
  EXPECT_THROW(eval::fid_by_halves(generated, real, 1), Error);
  EXPECT_THROW(eval::fid_by_halves(generated.slice(0, 0, 40).contiguous(), real, N), Error);
}

TEST(FusionEval, AClassifierFolderJudgesAsTheClassifierDoes) {
  const std::string dir = fresh_dir("judge");
  const vision::CnnConfig c = write_judge(dir);
  const eval::CnnJudge judge(dir);
  // More cells than one batch (256), so the batches are put together.
  std::vector<Tensor> photos;
  for (int i = 0; i < 300; ++i) photos.push_back(item_photo(uint32_t(i)).reshape({1, kSide, kSide, 1}));
  const Tensor cells = ops::concat(photos, 0);
  const io::SafetensorsModel m = io::SafetensorsModel::open(dir + "/model.safetensors");
  const auto w = vision::load_cnn_classifier(nn::file_maker(io::safetensors_source(m, dir), "classifier"), c);
  const std::vector<int> classes = judge.classify(cells);
  const Tensor feats = judge.features(cells);
  ASSERT_EQ(classes.size(), 300u);
  ASSERT_EQ(feats.shape(), Shape({300, 6}));
  std::set<int> seen;
  for (int i = 0; i < 300; i += 37) {
    const Tensor f = vision::cnn_features(nn::Infer{}, c, w, photos[size_t(i)]);
    EXPECT_LE(max_abs_diff(f, feats.slice(0, i, i + 1).contiguous()), 1e-5) << i;
    const Tensor l = vision::cnn_logits(nn::Infer{}, w, f);
    EXPECT_EQ(classes[size_t(i)], int(std::max_element(l.data<float>(), l.data<float>() + 10) - l.data<float>())) << i;
  }
  for (int k : classes) seen.insert(k);
  EXPECT_GE(seen.size(), 2u);  // not one class for all: the argmax follows the photo
}

TEST(FusionEval, AFolderThatIsNotAClassifierIsOneError) {
  const std::string root = fresh_dir("not_judges");
  EXPECT_NE(error_of([&] { eval::CnnJudge j(root + "/none"); }).find("not a folder"), std::string::npos);
  fs::create_directories(root + "/empty");
  EXPECT_NE(error_of([&] { eval::CnnJudge j(root + "/empty"); }).find("no config.json"), std::string::npos);
  write_judge(root + "/no_weights");
  fs::remove(root + "/no_weights/model.safetensors");
  EXPECT_NE(error_of([&] { eval::CnnJudge j(root + "/no_weights"); }).find("no model.safetensors"), std::string::npos);
  // A VAE's folder, and a LlamaFusion's config.
  write_judge(root + "/vae");
  gen::VaeConfig vc;
  io::write_text_file_atomically(root + "/vae/config.json", gen::vae_config_json(vc));
  EXPECT_NE(error_of([&] { eval::CnnJudge j(root + "/vae"); }).find("not a classifier folder"), std::string::npos);
  write_judge(root + "/fusion");
  io::write_text_file_atomically(root + "/fusion/config.json", R"({"model_type": "llamafusion"})");
  EXPECT_NE(error_of([&] { eval::CnnJudge j(root + "/fusion"); }).find("'llamafusion' model, not a classifier"), std::string::npos);
  // A classifier of other images.
  write_judge(root + "/small");
  vision::CnnConfig small;
  small.image_size = 8, small.widths = {4, 8}, small.n_features = 6, small.norm_num_groups = 2;
  io::write_text_file_atomically(root + "/small/config.json", vision::cnn_config_json(small));
  EXPECT_NE(error_of([&] { eval::CnnJudge j(root + "/small"); }).find("reads 8 px"), std::string::npos);
}

TEST(FusionEval, ReadsTestScenesAndRejectsBadOnes) {
  const std::string dir = fresh_dir("scenes");
  const std::vector<std::vector<int>> layouts = {{1, 7, -1, 9}, {-1, -1, 8, -1}, {0, -1, -1, 3}};
  write_scenes(dir, layouts);
  const std::vector<eval::TestScene> all = eval::read_test_scenes(dir + "/test_captions.json", dir, 0);
  ASSERT_EQ(all.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(all[i].cells, layouts[i]);
    EXPECT_EQ(all[i].caption, data::fashion_caption(layouts[i], 2));
    ASSERT_EQ(all[i].picture.shape(), Shape({56, 56, 1}));
  }
  // The picture as saved: scene 0's top right is its photo 1.
  EXPECT_LE(max_abs_diff(eval::scene_cells(all[0].picture).slice(0, 1, 2).contiguous().reshape({kSide, kSide, 1}), item_photo(1)), 0.5 / 127.5);
  EXPECT_EQ(eval::read_test_scenes(dir + "/test_captions.json", dir, 2).size(), 2u);
  auto err = [&](int64_t n, const std::string& images = "") {
    return error_of([&] { eval::read_test_scenes(dir + "/test_captions.json", images.empty() ? dir : images, n); });
  };
  EXPECT_NE(err(1).find("at least 2"), std::string::npos) << err(1);
  EXPECT_NE(err(4).find("--scenes 4 but"), std::string::npos) << err(4);
  EXPECT_NE(err(0, dir + "/elsewhere").find("does not exist"), std::string::npos);
  EXPECT_NE(error_of([&] { eval::read_test_scenes(dir + "/none.json", dir, 0); }).find("none.json does not exist"), std::string::npos);
  // A caption the builder does not write, and scenes of two sizes.
  nlohmann::json recs = nlohmann::json::parse(read_file(dir + "/test_captions.json"));
  recs[1]["conversations"][1]["value"] = "a bag in the lower left";
  io::write_text_file_atomically(dir + "/bad.json", recs.dump());
  const std::string bad = error_of([&] { eval::read_test_scenes(dir + "/bad.json", dir, 0); });
  EXPECT_NE(bad.find("record 1 (test-1): 'a bag in the lower left' is not a fashion-vqa caption"), std::string::npos) << bad;
  const std::string dir3 = fresh_dir("scenes3");
  write_scenes(dir3, {std::vector<int>(9, 2), {1, -1, -1, -1}});
  const std::string mixed = error_of([&] { eval::read_test_scenes(dir3 + "/test_captions.json", dir3, 0); });
  EXPECT_NE(mixed.find("a picture of 56 px among scenes of 84"), std::string::npos) << mixed;
}

namespace {

// A tiny LlamaFusion model of 56 px grey scenes (random weights): a synth llama base, a VAE of 4
// levels (7x7 latents of 2 channels) and a U-Net of one level (49 image positions), in
// root/model.
std::string write_fusion(const std::string& root) {
  fs::create_directories(root + "/vae");
  model::SynthOptions o;
  o.dtype = DType::F32;
  model::write_synth_model(model::synth_shape("tiny-llama"), o, root + "/base.gguf");
  gen::VaeConfig vc;
  vc.in_channels = 1, vc.latent_channels = 2, vc.block_out_channels = {4, 4, 4, 4}, vc.norm_num_groups = 2, vc.sample_size = 56;
  std::vector<ag::Var> vp;
  gen::load_vae(nn::new_param_maker(vp, 5), vc);
  perturb(vp, 300);
  io::write_text_file_atomically(root + "/vae/config.json", gen::vae_config_json(vc));
  io::write_safetensors(root + "/vae/model.safetensors", ag::named_values(vp));
  gen::FusionConfig fc;
  fc.base = root + "/base.gguf", fc.vae = root + "/vae", fc.block_out_channels = {8}, fc.norm_num_groups = 4;
  const io::GgufFile g = io::GgufFile::open(root + "/base.gguf");
  gen::TrainableFusion m(fc, g, vc, 7);
  std::vector<ag::Var> image;
  for (const ag::Var& p : m.params())
    if (p->name.starts_with("image.")) image.push_back(p);
  perturb(image, 500, 0.05f);
  gen::FusionConfig written = fc;
  written.base = "../base.gguf", written.vae = "../vae";
  m.save(root + "/model", written);
  return root + "/model";
}

// n photos of Fashion-MNIST's IDX layout (plain, not gzipped), and their labels.
void write_photos(const std::string& images, const std::string& labels, int n) {
  std::string im = {0, 0, 8, 3, 0, 0, 0, char(n), 0, 0, 0, 28, 0, 0, 0, 28}, lb = {0, 0, 8, 1, 0, 0, 0, char(n)};
  for (int i = 0; i < n; ++i) {
    const Tensor p = item_photo(uint32_t(100 + i));
    for (int64_t j = 0; j < p.numel(); ++j) im.push_back(char(uint8_t(std::lround((p.data<float>()[j] + 1) * 127.5))));
    lb.push_back(char(i % 10));
  }
  std::ofstream(images, std::ios::binary) << im;
  std::ofstream(labels, std::ios::binary) << lb;
}

}  // namespace

// The whole verb on tiny random models: what it reports agrees with the parts computed here
// (the judge on the photos and on the real scenes) and with its own per-scene verdicts.
TEST(FusionEval, AWholeRunReportsWhatItsPartsMeasure) {
  const std::string root = fresh_dir("whole");
  const std::string model = write_fusion(root);
  write_judge(root + "/judge");
  const std::vector<std::vector<int>> layouts = {{1, 7, -1, 9}, {-1, -1, 8, -1}, {0, -1, -1, 3}};
  write_scenes(root + "/data", layouts);
  write_photos(root + "/photos.idx", root + "/labels.idx", 12);
  const CliResult r = run_cli("eval-fusion -m '" + model + "' --judge '" + root + "/judge' --data '" + root +
                              "/data/test_captions.json' --steps 2 --seed 5 --max-tokens 4 --photos '" + root + "/photos.idx' --labels '" +
                              root + "/labels.idx' -o '" + root + "/report.json'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("3 scenes, 2 DDIM steps, guidance 3.0, seeds 5..7"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("s/scene"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("eval-fusion: drawing scene 3/3"), std::string::npos) << r.err;
  const nlohmann::json j = nlohmann::json::parse(read_file(root + "/report.json"));

  const eval::CnnJudge judge(root + "/judge");
  const data::FashionSplit photos = data::read_fashion_split(root + "/photos.idx", root + "/labels.idx");
  Tensor pt = Tensor::empty({12, kSide, kSide, 1});
  for (size_t i = 0; i < photos.pixels.size(); ++i) pt.data<float>()[i] = float(photos.pixels[i]) / 127.5f - 1.0f;
  const std::vector<int> pc = judge.classify(pt);
  int right = 0;
  for (int i = 0; i < 12; ++i) right += pc[size_t(i)] == photos.labels[size_t(i)];
  EXPECT_DOUBLE_EQ(j["judge_photo_accuracy"].get<double>(), right / 12.0);

  const auto scenes = eval::read_test_scenes(root + "/data/test_captions.json", root + "/data", 0);
  std::vector<Tensor> cells;
  std::vector<std::vector<int>> wanted;
  for (const auto& s : scenes) cells.push_back(eval::scene_cells(s.picture)), wanted.push_back(s.cells);
  const eval::EmptyThreshold t = eval::empty_threshold(cells, wanted);
  EXPECT_DOUBLE_EQ(j["empty_threshold"]["threshold"].get<double>(), t.threshold);
  EXPECT_EQ(j["empty_threshold"]["real_empty_max"].get<double>(), 0.0);
  eval::CellTally real;
  for (size_t i = 0; i < cells.size(); ++i) real += eval::score_cells(cells[i], wanted[i], judge, t.threshold);
  EXPECT_EQ(j["faithfulness"]["real"]["filled_right"].get<int64_t>(), real.filled_right);
  EXPECT_EQ(j["faithfulness"]["real"]["filled_cells"].get<int64_t>(), 6);
  EXPECT_EQ(j["faithfulness"]["real"]["empty_right"].get<int64_t>(), 6);  // real empty cells are black

  // The drawn scenes' tally is the per-scene verdicts'.
  int64_t filled_right = 0, empty_right = 0, cells_right = 0, exact = 0;
  ASSERT_EQ(j["per_scene"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const nlohmann::json& s = j["per_scene"][i];
    ASSERT_EQ(s["drawn"].size(), 4u);
    for (size_t c = 0; c < 4; ++c) {
      const std::string asked = s["cells"][c];
      if (asked == "empty") empty_right += s["drawn"][c]["empty"].get<bool>();
      else filled_right += s["drawn"][c]["judged"] == asked && !s["drawn"][c]["empty"].get<bool>();
    }
    cells_right += s["description_cells_right"].get<int64_t>();
    exact += s["description"] == s["caption"];
  }
  EXPECT_EQ(j["faithfulness"]["generated"]["filled_right"].get<int64_t>(), filled_right);
  EXPECT_EQ(j["faithfulness"]["generated"]["empty_right"].get<int64_t>(), empty_right);
  EXPECT_EQ(j["understanding"]["cells_right"].get<int64_t>(), cells_right);
  EXPECT_EQ(j["understanding"]["exact_captions"].get<int64_t>(), exact);
  EXPECT_EQ(j["fid"]["first_half_cells"].get<int64_t>(), 4);
  EXPECT_EQ(j["fid"]["second_half_cells"].get<int64_t>(), 8);
  EXPECT_TRUE(std::isfinite(j["fid"]["generated_vs_real"].get<double>()));
  EXPECT_GE(j["fid"]["real_vs_real"].get<double>(), 0.0);
}

TEST(FusionEvalCli, InputErrorsAreOneLineEach) {
  const std::string root = fresh_dir("cli_errors");
  fs::create_directories(root + "/fusion");
  io::write_text_file_atomically(root + "/fusion/config.json", R"({"model_type": "llamafusion"})");
  write_judge(root + "/judge");
  write_scenes(root + "/data", {{1, -1, -1, -1}, {-1, 2, -1, -1}});
  const std::string data = " --data '" + root + "/data/test_captions.json'";
  auto expect_error = [&](const std::string& args, const std::string& says) {
    const CliResult r = run_cli("eval-fusion " + args);
    EXPECT_EQ(r.status, 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  };
  const std::string fusion = "-m '" + root + "/fusion'", judge = " --judge '" + root + "/judge'";
  expect_error("-m '" + root + "/none'" + judge + data, "eval-fusion: " + root + "/none does not exist");
  expect_error("-m '" + root + "/judge'" + judge + data, "is a 'unknown' model without image modules");
  expect_error(fusion + judge + " --data '" + root + "/none.json'", "none.json does not exist");
  expect_error(fusion + judge + data + " --scenes 1", "1 scene(s); FID's two halves need at least 2");
  expect_error(fusion + " --judge '" + root + "/fusion'" + data, "model, not a classifier");
  expect_error(fusion + " --judge '" + root + "/none'" + data, "not a folder");
  expect_error(fusion + judge + data + " --photos '" + root + "/p.idx'", "--photos and --labels go together");
  expect_error(fusion + judge + data + " --photos '" + root + "/p.idx' --labels '" + root + "/l.idx'", "p.idx");
  expect_error(fusion + judge + data + " -o '" + root + "/no/r.json'", "does not exist");
}
