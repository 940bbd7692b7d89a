#pragma once
// Image preprocessing exactly as the Hugging Face processors do it on 8-bit images: PIL's
// antialiasing bicubic resampling in its fixed-point arithmetic (horizontal pass, rounded to
// 8 bits, then vertical), LLaVA's pad-to-square with the mean colour, centre crop, rescale by
// 1/255 and per-channel normalization. Output is float CHW [3, S, S].
#include <array>
#include <string>

#include "ocellus/core/tensor.h"
#include "ocellus/io/image.h"

namespace ocellus::vision {

struct PreprocessConfig {
  enum class Mode {
    Pad,           // LLaVA-1.5 "pad": square with the mean colour, image centred, then as ShortestEdge
    ShortestEdge,  // CLIPImageProcessor: shortest edge -> size (aspect kept), centre crop size x size
    Squash,        // SiglipImageProcessor: resize straight to size x size
  };
  Mode mode = Mode::Pad;
  int size = 336;
  std::array<float, 3> mean{0.48145466f, 0.4578275f, 0.40821073f};  // CLIP's
  std::array<float, 3> std{0.26862954f, 0.26130258f, 0.27577711f};
  void validate() const;
};
const char* mode_name(PreprocessConfig::Mode m);

// A Hugging Face preprocessor_config.json (CLIPImageProcessor / SiglipImageProcessor) over
// `base`: image_mean / image_std, and the geometry — size {"shortest_edge": N} (or a number) with
// a centre crop is ShortestEdge, size {"height", "width"} without one is Squash; do_pad
// (LlavaImageProcessor) makes ShortestEdge Pad. Fields it lacks
// keep base's values; a malformed field is an error naming the file and the field.
PreprocessConfig read_preprocessor_config(const std::string& path, PreprocessConfig base);
// The same from the file's text (`path` labels errors).
PreprocessConfig parse_preprocessor_config(const std::string& text, const std::string& path, PreprocessConfig base);

// The float CHW tensor [3, size, size] the tower reads.
Tensor preprocess(const io::ImageRgb8& img, const PreprocessConfig& c);

// The steps, each as PIL / Hugging Face performs it on 8-bit RGB.
io::ImageRgb8 resize_bicubic(const io::ImageRgb8& img, int width, int height);
io::ImageRgb8 expand_to_square(const io::ImageRgb8& img, std::array<uint8_t, 3> background);
io::ImageRgb8 center_crop(const io::ImageRgb8& img, int width, int height);

// A float HWC image [S, S, 3] (as `--pixels` files hold it) to the tower's CHW layout.
Tensor hwc_to_chw(const Tensor& hwc);

}  // namespace ocellus::vision
