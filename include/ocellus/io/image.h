#pragma once
// Image files into 8-bit RGB, as Hugging Face processors see them after PIL's convert("RGB"):
// PNG (8/16-bit, grayscale, palette, with or without alpha) through libpng and JPEG (baseline,
// progressive, grayscale, CMYK) through libjpeg-turbo, recognized by their bytes, not their name.
// Alpha is dropped, not composited (PIL's convert("RGB") keeps the colour channels as stored).
// Damaged, truncated or absurdly large images are errors naming the file and the problem, found
// after work bounded by the file's size: a header declaring more pixels than the file's bytes can
// encode (deflate's 1032-fold limit for PNG; at least 2 bits per 8x8 Huffman block for JPEG, 1
// for progressive, 1032-fold for arithmetic coding) is refused before any pixel memory, and a
// file whose data ends early has taken memory only for the rows it held (Adam7-interlaced PNGs
// excepted: their passes revisit every row).
#include <cstdint>
#include <string>
#include <vector>

namespace ocellus::io {

struct ImageRgb8 {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // [height, width, 3]
  uint8_t at(int y, int x, int c) const { return rgb[(size_t(y) * size_t(width) + size_t(x)) * 3 + size_t(c)]; }
};

// Largest image accepted, in pixels (PIL's decompression-bomb error threshold): a header that
// declares more is refused before any pixel memory is allocated.
constexpr int64_t kMaxImagePixels = 178956970;

// `name` only labels errors.
ImageRgb8 decode_image(const uint8_t* data, size_t size, const std::string& name);
ImageRgb8 load_image(const std::string& path);

// Writes an 8-bit RGB PNG (atomically).
void save_png(const std::string& path, const ImageRgb8& img);

}  // namespace ocellus::io
