// libFuzzer target: a Hugging Face preprocessor_config.json must parse or throw ocellus::Error;
// a parsed configuration (when its size is small enough to run quickly) preprocesses a small
// image into a [3, size, size] tensor of finite values.
#include <cmath>
#include <cstdint>
#include <string>

#include "ocellus/core/error.h"
#include "ocellus/vision/preprocess.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ocellus;
  try {
    const vision::PreprocessConfig c = vision::parse_preprocessor_config(
        std::string(reinterpret_cast<const char*>(data), size), "fuzz/preprocessor_config.json", vision::PreprocessConfig{});
    if (c.size > 64) return 0;
    io::ImageRgb8 img;
    img.width = 7, img.height = 5;
    for (int i = 0; i < 7 * 5 * 3; ++i) img.rgb.push_back(uint8_t(i * 37));
    const Tensor t = vision::preprocess(img, c);
    if (t.numel() != int64_t(3) * c.size * c.size) __builtin_trap();
  } catch (const Error&) {
  }
  return 0;
}
