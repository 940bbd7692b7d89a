// The CNN classifier (vision/cnn_classifier.h): a training step against PyTorch (float64) and
// inference against training.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/ops/elementwise.h"
#include "ocellus/vision/cnn_classifier.h"
#include "testutil.h"
#include "torch_ref.h"

using namespace ocellus;
using namespace ocellus::test;

TEST(CnnClassifier, TrainingStepMatchesPyTorchAndInferenceMatchesTraining) {
  vision::CnnConfig c;
  c.image_size = 8, c.widths = {4, 8, 8}, c.n_features = 6, c.norm_num_groups = 2, c.n_classes = 5;
  std::vector<ag::Var> params;
  const vision::CnnClassifier<nn::Train> w = vision::load_cnn_classifier(nn::new_param_maker(params, 5), c);
  perturb(params, 300);  // off their initial values (biases 0, norm weights 1 would hide a swap)
  const Tensor x = randn({3, 8, 8, 1}, 1);
  const std::vector<int32_t> labels = {4, 0, 2};
  const ag::Var feats = vision::cnn_features(nn::Train{}, c, w, ag::constant(x));
  ASSERT_EQ(feats->value.shape(), Shape({3, 6}));
  const ag::Var logits = vision::cnn_logits(nn::Train{}, w, feats);
  const ag::Var loss = ag::cross_entropy(logits, labels);
  ag::Tape::current().backward(loss);

  const std::string dir = temp_path("cnn_step");
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << nlohmann::json{{"in_channels", 1}, {"image_size", 8}, {"widths", {4, 8, 8}},
                                                        {"n_features", 6}, {"norm_num_groups", 2}}.dump();
  io::write_safetensors(dir + "/model.safetensors", ag::named_values(params));
  const std::string lp = temp_path("cnn_labels.i32");
  {
    std::ofstream o(lp, std::ios::binary);
    o.write(reinterpret_cast<const char*>(labels.data()), std::streamsize(labels.size() * sizeof(int32_t)));
  }
  const std::vector<float> ref = torch_ref({"cnn_classifier", dir, write_temp("cnn_x.f32", x), lp, ""}, dir + "/out.f32");
  expect_step_matches(loss, params, ref, 2e-6);  // worst gradient 4.5e-07

  const io::SafetensorsModel m = io::SafetensorsModel::open(dir);
  const vision::CnnClassifier<nn::Infer> wi = vision::load_cnn_classifier(nn::file_maker(io::safetensors_source(m, dir), "classifier"), c);
  const Tensor fi = vision::cnn_features(nn::Infer{}, c, wi, x);
  EXPECT_LE(rel_err(fi, feats->value), 1e-6);
  EXPECT_LE(rel_err(vision::cnn_logits(nn::Infer{}, wi, fi), logits->value), 1e-6);
  EXPECT_THROW(vision::cnn_features(nn::Infer{}, c, wi, randn({1, 7, 7, 1}, 1)), Error);
  c.image_size = 6;
  EXPECT_THROW(c.validate("cfg"), Error);  // two halvings need a multiple of 4
}
