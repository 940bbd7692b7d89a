#include "ocellus/io/json.h"
#include "ocellus/vision/preprocess.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/io/file.h"

namespace ocellus::vision {
namespace {

// PIL's bicubic kernel (a = -0.5) and its 8-bit fixed point (Resample.c: 22 fraction bits).
constexpr int kPrecisionBits = 32 - 8 - 2;

double bicubic(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// Per output pixel: the first input pixel and the integer weights of the input pixels it reads.
struct Coeffs {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> k;  // [out, ksize]
};

Coeffs precompute(int in_size, int out_size) {
  const double scale = double(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0), support = 2.0 * filterscale;
  Coeffs c;
  c.ksize = int(std::ceil(support)) * 2 + 1;
  c.first.resize(size_t(out_size));
  c.count.resize(size_t(out_size));
  c.k.assign(size_t(out_size) * size_t(c.ksize), 0);
  std::vector<double> w(size_t(c.ksize));
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale, ss = 1.0 / filterscale;
    int xmin = int(center - support + 0.5), xmax = int(center + support + 0.5);
    xmin = std::max(xmin, 0);
    xmax = std::min(xmax, in_size) - xmin;
    double total = 0.0;
    for (int x = 0; x < xmax; ++x) total += (w[size_t(x)] = bicubic((x + xmin - center + 0.5) * ss));
    for (int x = 0; x < xmax; ++x) {
      const double v = total != 0.0 ? w[size_t(x)] / total : w[size_t(x)];
      c.k[size_t(xx) * size_t(c.ksize) + size_t(x)] = int32_t(v * (1 << kPrecisionBits) + (v < 0 ? -0.5 : 0.5));
    }
    c.first[size_t(xx)] = xmin;
    c.count[size_t(xx)] = xmax;
  }
  return c;
}

uint8_t clip8(int64_t v) {
  const int64_t s = v >> kPrecisionBits;
  return uint8_t(std::clamp<int64_t>(s, 0, 255));
}

}  // namespace

const char* mode_name(PreprocessConfig::Mode m) {
  switch (m) {
    case PreprocessConfig::Mode::Pad: return "pad";
    case PreprocessConfig::Mode::ShortestEdge: return "shortest_edge";
    case PreprocessConfig::Mode::Squash: return "squash";
  }
  return "?";
}

void PreprocessConfig::validate() const {
  OCELLUS_CHECK(size > 0 && size <= 4096, "preprocess: image size ", size, " out of range (1..4096)");
  for (int c = 0; c < 3; ++c)
    OCELLUS_CHECK(std[size_t(c)] > 0 && std::isfinite(mean[size_t(c)]), "preprocess: image_std must be > 0 and image_mean finite");
}

io::ImageRgb8 resize_bicubic(const io::ImageRgb8& in, int width, int height) {
  OCELLUS_CHECK(width > 0 && height > 0 && in.width > 0 && in.height > 0, "resize: empty image or target (",
                in.width, "x", in.height, " -> ", width, "x", height, ")");
  const Coeffs h = precompute(in.width, width), v = precompute(in.height, height);
  // Horizontal pass first, over only the rows the vertical pass reads (as PIL does).
  const bool need_h = width != in.width, need_v = height != in.height;
  const int y_first = need_v ? v.first[0] : 0;
  const int y_last = need_v ? v.first[size_t(height - 1)] + v.count[size_t(height - 1)] : in.height;
  io::ImageRgb8 tmp;
  const io::ImageRgb8* src = &in;
  int row0 = 0;
  if (need_h) {
    tmp.width = width;
    tmp.height = y_last - y_first;
    tmp.rgb.resize(size_t(tmp.width) * size_t(tmp.height) * 3);
    for (int y = 0; y < tmp.height; ++y)
      for (int x = 0; x < width; ++x) {
        const int32_t* k = &h.k[size_t(x) * size_t(h.ksize)];
        for (int c = 0; c < 3; ++c) {
          int64_t acc = int64_t(1) << (kPrecisionBits - 1);
          for (int i = 0; i < h.count[size_t(x)]; ++i) acc += int64_t(in.at(y + y_first, h.first[size_t(x)] + i, c)) * k[i];
          tmp.rgb[(size_t(y) * size_t(width) + size_t(x)) * 3 + size_t(c)] = clip8(acc);
        }
      }
    src = &tmp;
    row0 = y_first;
  }
  if (!need_v) return *src;
  io::ImageRgb8 out;
  out.width = src->width;
  out.height = height;
  out.rgb.resize(size_t(out.width) * size_t(height) * 3);
  for (int y = 0; y < height; ++y) {
    const int32_t* k = &v.k[size_t(y) * size_t(v.ksize)];
    const int first = v.first[size_t(y)] - row0;
    for (int x = 0; x < out.width; ++x)
      for (int c = 0; c < 3; ++c) {
        int64_t acc = int64_t(1) << (kPrecisionBits - 1);
        for (int i = 0; i < v.count[size_t(y)]; ++i) acc += int64_t(src->at(first + i, x, c)) * k[i];
        out.rgb[(size_t(y) * size_t(out.width) + size_t(x)) * 3 + size_t(c)] = clip8(acc);
      }
  }
  return out;
}

io::ImageRgb8 expand_to_square(const io::ImageRgb8& img, std::array<uint8_t, 3> bg) {
  if (img.width == img.height) return img;
  const int s = std::max(img.width, img.height);
  io::ImageRgb8 out;
  out.width = out.height = s;
  out.rgb.resize(size_t(s) * size_t(s) * 3);
  for (size_t i = 0; i < out.rgb.size(); i += 3) std::copy(bg.begin(), bg.end(), out.rgb.begin() + long(i));
  // LLaVA's expand2square: pasted at ((s - w) / 2, 0) or (0, (s - h) / 2), integer division.
  const int x0 = (s - img.width) / 2, y0 = (s - img.height) / 2;
  for (int y = 0; y < img.height; ++y)
    std::copy_n(img.rgb.begin() + long(size_t(y) * size_t(img.width) * 3), size_t(img.width) * 3,
                out.rgb.begin() + long((size_t(y + y0) * size_t(s) + size_t(x0)) * 3));
  return out;
}

io::ImageRgb8 center_crop(const io::ImageRgb8& img, int width, int height) {
  OCELLUS_CHECK(width <= img.width && height <= img.height, "center_crop: ", width, "x", height,
                " is larger than the image (", img.width, "x", img.height, ")");
  const int top = (img.height - height) / 2, left = (img.width - width) / 2;
  io::ImageRgb8 out;
  out.width = width;
  out.height = height;
  out.rgb.resize(size_t(width) * size_t(height) * 3);
  for (int y = 0; y < height; ++y)
    std::copy_n(img.rgb.begin() + long((size_t(y + top) * size_t(img.width) + size_t(left)) * 3), size_t(width) * 3,
                out.rgb.begin() + long(size_t(y) * size_t(width) * 3));
  return out;
}

Tensor preprocess(const io::ImageRgb8& img_in, const PreprocessConfig& c) {
  c.validate();
  io::ImageRgb8 img;
  using Mode = PreprocessConfig::Mode;
  if (c.mode == Mode::Squash) {
    img = resize_bicubic(img_in, c.size, c.size);
  } else {
    const io::ImageRgb8* src = &img_in;
    io::ImageRgb8 square;
    if (c.mode == Mode::Pad) {
      std::array<uint8_t, 3> bg{};
      // int(mean * 255) as transformers' pad colour, clamped first: a mean far out of range (a
      // file's) must not overflow the int.
      for (int i = 0; i < 3; ++i) bg[size_t(i)] = uint8_t(int(std::clamp(c.mean[size_t(i)] * 255.0f, 0.0f, 255.0f)));
      square = expand_to_square(img_in, bg);
      src = &square;
    }
    // Shortest edge to size, the other scaled and truncated (transformers' get_resize_output_image_size).
    const int w = src->width, h = src->height, short_edge = std::min(w, h), long_edge = std::max(w, h);
    const int new_long = int(int64_t(c.size) * long_edge / short_edge);
    const int nw = w <= h ? c.size : new_long, nh = w <= h ? new_long : c.size;
    img = center_crop(resize_bicubic(*src, nw, nh), c.size, c.size);
  }
  Tensor out = Tensor::empty({3, c.size, c.size});  // [3, S, S]
  float* o = out.data<float>();
  const size_t plane = size_t(c.size) * size_t(c.size);
  for (size_t p = 0; p < plane; ++p)
    for (size_t ch = 0; ch < 3; ++ch) {
      const float v = float(double(img.rgb[p * 3 + ch]) * (1.0 / 255.0));
      o[ch * plane + p] = (v - c.mean[ch]) / c.std[ch];
    }
  return out;
}

Tensor hwc_to_chw(const Tensor& hwc) {
  OCELLUS_CHECK(hwc.ndim() == 3 && hwc.dim(2) == 3, "pixels: expected [H, W, 3], got ", hwc.shape().str());
  const int64_t h = hwc.dim(0), w = hwc.dim(1);
  return hwc.contiguous().reshape({h * w, 3}).transpose(0, 1).contiguous().reshape({3, h, w});
}

PreprocessConfig read_preprocessor_config(const std::string& path, PreprocessConfig base) {
  return parse_preprocessor_config(io::read_text_file(path, size_t(1) << 20), path, base);
}

PreprocessConfig parse_preprocessor_config(const std::string& text, const std::string& path, PreprocessConfig c) {
  using nlohmann::json;
  const json j = io::parse_json(text, path, "preprocess");
  OCELLUS_CHECK(j.is_object(), "preprocess: ", path, ": not a JSON object");
  auto triple = [&](const char* key, std::array<float, 3>& out) {
    if (!j.contains(key)) return;
    const json& v = j[key];
    OCELLUS_CHECK(v.is_array() && v.size() == 3 && v[0].is_number() && v[1].is_number() && v[2].is_number(), "preprocess: ",
                  path, ": ", key, " must be 3 numbers");
    for (size_t i = 0; i < 3; ++i) out[i] = v[i].get<float>();
  };
  triple("image_mean", c.mean);
  triple("image_std", c.std);
  auto positive = [&](const json& v, const char* key) {
    OCELLUS_CHECK(v.is_number_integer() && v.get<int64_t>() > 0 && v.get<int64_t>() <= 8192, "preprocess: ", path, ": ", key,
                  " must be a positive integer");
    return int(v.get<int64_t>());
  };
  OCELLUS_CHECK(!j.contains("do_center_crop") || j["do_center_crop"].is_boolean(), "preprocess: ", path,
                ": do_center_crop must be true or false");  // found by fuzz/fuzz_preprocessor_config
  const bool crop = j.value("do_center_crop", j.contains("crop_size"));
  if (j.contains("size")) {
    const json& sz = j["size"];
    if (sz.is_number()) {
      c.size = positive(sz, "size"), c.mode = PreprocessConfig::Mode::ShortestEdge;
    } else if (sz.is_object() && sz.contains("shortest_edge")) {
      c.size = positive(sz["shortest_edge"], "size.shortest_edge"), c.mode = PreprocessConfig::Mode::ShortestEdge;
    } else if (sz.is_object() && sz.contains("height") && sz.contains("width")) {
      const int h = positive(sz["height"], "size.height"), w = positive(sz["width"], "size.width");
      OCELLUS_CHECK(h == w, "preprocess: ", path, ": size ", h, "x", w, " is not square (towers here take square images)");
      c.size = h, c.mode = crop ? PreprocessConfig::Mode::ShortestEdge : PreprocessConfig::Mode::Squash;
    } else {
      fail("preprocess: ", path, ": size must be a number or hold shortest_edge or height and width");
    }
  }
  if (crop && j.contains("crop_size")) {
    const json& cs = j["crop_size"];
    const int n = cs.is_object() ? positive(cs.value("height", json()), "crop_size.height") : positive(cs, "crop_size");
    OCELLUS_CHECK(n == c.size, "preprocess: ", path, ": crop_size ", n, " differs from size ", c.size,
                  " (only a square crop of the resized edge is supported)");
  }
  // LlavaImageProcessor's do_pad: a square with the mean colour first, as LLaVA-1.5's "pad".
  if (j.contains("do_pad")) {
    OCELLUS_CHECK(j["do_pad"].is_boolean(), "preprocess: ", path, ": do_pad must be true or false");
    if (j["do_pad"].get<bool>()) {
      OCELLUS_CHECK(c.mode != PreprocessConfig::Mode::Squash, "preprocess: ", path,
                    ": do_pad with a squashing resize is not supported");
      c.mode = PreprocessConfig::Mode::Pad;
    }
  }
  c.validate();
  return c;
}

}  // namespace ocellus::vision
