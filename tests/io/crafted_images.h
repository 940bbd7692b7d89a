#pragma once
// Real image files with their headers rewritten to declare another size (the rest of the file
// unchanged), for the tests of decoders refusing what a file cannot hold.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <string>

namespace ocellus::test {

// `bytes` with the JPEG's frame header (any SOFn: baseline, progressive, arithmetic) declaring w x h.
inline std::string with_jpeg_size(std::string bytes, int w, int h) {
  for (size_t i = 2; i + 9 < bytes.size();) {
    const uint8_t m = uint8_t(bytes[i + 1]);
    if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
      bytes[i + 5] = char(h >> 8), bytes[i + 6] = char(h & 0xff), bytes[i + 7] = char(w >> 8), bytes[i + 8] = char(w & 0xff);
      return bytes;
    }
    i += 2 + (size_t(uint8_t(bytes[i + 2])) << 8 | uint8_t(bytes[i + 3]));
  }
  ADD_FAILURE() << "no frame header";
  return bytes;
}

// `bytes` (a PNG) with its IHDR declaring w x h, the chunk's CRC recomputed so libpng reads on.
inline std::string with_png_size(std::string bytes, uint32_t w, uint32_t h) {
  for (int i = 0; i < 4; ++i) bytes[size_t(16 + i)] = char((w >> (24 - 8 * i)) & 0xff), bytes[size_t(20 + i)] = char((h >> (24 - 8 * i)) & 0xff);
  const uint32_t crc = uint32_t(crc32(0, reinterpret_cast<const Bytef*>(bytes.data() + 12), 17));
  for (int i = 0; i < 4; ++i) bytes[size_t(29 + i)] = char((crc >> (24 - 8 * i)) & 0xff);
  return bytes;
}

}  // namespace ocellus::test
