// Preprocessing against Hugging Face's processors (fixtures/preprocess: PIL bicubic, 8-bit).
#include "ocellus/core/error.h"
#include "ocellus/io/image.h"
#include "ocellus/vision/preprocess.h"
#include "testutil.h"

using namespace ocellus;

namespace {

// The fixture README's bound: within one 8-bit step (0.015 normalized) on >= 99% of values.
void expect_matches(const Tensor& ours, const std::string& ref_path, int size) {
  const std::vector<float> ref = test::read_array<float>(ref_path);
  ASSERT_EQ(ref.size(), size_t(3 * size * size)) << ref_path;
  ASSERT_EQ(ours.numel(), int64_t(ref.size()));
  const float* o = ours.data<float>();
  size_t close = 0;
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(double(o[i]) - ref[i]);
    close += d <= 0.015;
    worst = std::max(worst, d);
  }
  const double frac = double(close) / double(ref.size());
  EXPECT_GE(frac, 0.99) << ref_path << ": worst " << worst;
  // PIL's fixed-point resampling is reproduced step for step, so the agreement is exact up to
  // the last float bit of the normalization, a far tighter bound than the README's.
  EXPECT_LE(worst, 1e-5) << ref_path;
  std::printf("%s: %.4f%% within one 8-bit step, worst %.4f\n", ref_path.c_str(), 100.0 * frac, worst);
}

}  // namespace

TEST(Preprocess, ClipPadMatchesHuggingFace) {
  for (const char* name : {"chelsea.png", "llama1-logo.png", "rocket.jpg"}) {
    vision::PreprocessConfig c;  // defaults: LLaVA-1.5 pad, 336, CLIP mean / std
    const Tensor t = vision::preprocess(io::load_image(std::string(OCELLUS_FIXTURES) + "/images/" + name), c);
    expect_matches(t, std::string(OCELLUS_FIXTURES) + "/preprocess/" + name + ".clip-pad.336.f32", 336);
  }
}

TEST(Preprocess, SiglipMatchesHuggingFace) {
  for (const char* name : {"chelsea.png", "llama1-logo.png", "rocket.jpg"}) {
    vision::PreprocessConfig c;
    c.mode = vision::PreprocessConfig::Mode::Squash;
    c.size = 384;
    c.mean = {0.5f, 0.5f, 0.5f};
    c.std = {0.5f, 0.5f, 0.5f};
    const Tensor t = vision::preprocess(io::load_image(std::string(OCELLUS_FIXTURES) + "/images/" + name), c);
    expect_matches(t, std::string(OCELLUS_FIXTURES) + "/preprocess/" + name + ".siglip.384.f32", 384);
  }
}

TEST(Preprocess, ResizeOfConstantImageIsConstantAndIdentityIsExact) {
  io::ImageRgb8 img;
  img.width = 37;
  img.height = 23;
  img.rgb.assign(37 * 23 * 3, 77);
  for (auto [w, h] : {std::pair{10, 10}, {100, 7}, {37, 50}}) {
    const io::ImageRgb8 r = vision::resize_bicubic(img, w, h);
    ASSERT_EQ(r.width, w);
    for (uint8_t v : r.rgb) ASSERT_EQ(v, 77);
  }
  for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = uint8_t(i * 7);
  EXPECT_EQ(vision::resize_bicubic(img, 37, 23).rgb, img.rgb);
}

TEST(Preprocess, PadCentresImageOnMeanColour) {
  io::ImageRgb8 img;
  img.width = 4;
  img.height = 2;
  img.rgb.assign(4 * 2 * 3, 9);
  const io::ImageRgb8 s = vision::expand_to_square(img, {122, 116, 104});
  ASSERT_EQ(s.width, 4);
  ASSERT_EQ(s.height, 4);
  EXPECT_EQ(s.at(0, 0, 0), 122);  // row 0: background
  EXPECT_EQ(s.at(1, 0, 0), 9);    // rows 1-2: the image ((4 - 2) / 2 = 1)
  EXPECT_EQ(s.at(2, 3, 2), 9);
  EXPECT_EQ(s.at(3, 3, 2), 104);
}

// Found by fuzz/fuzz_preprocessor_config: do_center_crop of the wrong JSON type escaped as
// nlohmann's bare type_error. It is an error naming the file and the field.
TEST(Preprocess, ConfigFieldOfWrongTypeNamesFileAndField) {
  try {
    vision::parse_preprocessor_config(R"({"do_center_crop": "yes", "size": 32})", "pp.json", vision::PreprocessConfig{});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pp.json: do_center_crop must be true or false"), std::string::npos) << e.what();
  }
  EXPECT_EQ(vision::parse_preprocessor_config(R"({"do_center_crop": true, "size": 32, "crop_size": 32})", "pp.json",
                                              vision::PreprocessConfig{}).size, 32);
}
