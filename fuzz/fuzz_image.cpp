// libFuzzer target: PNG / JPEG decoding of arbitrary bytes must either give a consistent image or
// throw ocellus::Error (never crash, hang, or allocate beyond what the input can hold).
#include <cstdint>

#include "ocellus/core/error.h"
#include "ocellus/io/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const ocellus::io::ImageRgb8 img = ocellus::io::decode_image(data, size, "fuzz");
    if (img.width <= 0 || img.height <= 0 || img.rgb.size() != size_t(img.width) * size_t(img.height) * 3) __builtin_trap();
    (void)img.at(img.height - 1, img.width - 1, 2);
  } catch (const ocellus::Error&) {
  }
  return 0;
}
