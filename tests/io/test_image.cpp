// Image decoding: every PNG colour type / depth libpng writes, JPEG, and damaged files.
#include <png.h>
#include <zlib.h>

#include <cstdio>
#include <functional>

#include "ocellus/core/error.h"
#include "ocellus/io/image.h"
#include "io/crafted_images.h"
#include "testutil.h"

using namespace ocellus;

namespace {

const std::string kImages = std::string(OCELLUS_FIXTURES) + "/images/";

// Writes a PNG with libpng's writer: `color`/`depth` as given, rows from `row(y, bytes)`.
std::string write_png(const std::string& name, int w, int h, int color, int depth,
                      const std::function<void(int, std::vector<uint8_t>&)>& row,
                      const std::vector<png_color>& palette = {}, const std::vector<uint8_t>& trns = {}) {
  const std::string path = test::temp_path(name);
  FILE* f = std::fopen(path.c_str(), "wb");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_init_io(png, f);
  png_set_IHDR(png, info, png_uint_32(w), png_uint_32(h), depth, color, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!palette.empty()) png_set_PLTE(png, info, palette.data(), int(palette.size()));
  if (!trns.empty()) png_set_tRNS(png, info, trns.data(), int(trns.size()), nullptr);
  png_write_info(png, info);
  std::vector<uint8_t> buf;
  for (int y = 0; y < h; ++y) {
    row(y, buf);
    png_write_row(png, buf.data());
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  std::fclose(f);
  return path;
}

void expect_error(const std::string& path, const std::string& what) {
  try {
    io::load_image(path);
    FAIL() << path << ": no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << "the message names the file: " << e.what();
  }
}

}  // namespace

TEST(Image, PngRgbaDropsAlphaKeepingColour) {
  // PIL's convert("RGB") keeps the stored colour of transparent pixels.
  const std::string p = write_png("rgba.png", 3, 2, PNG_COLOR_TYPE_RGB_ALPHA, 8, [](int y, std::vector<uint8_t>& b) {
    b.clear();
    for (int x = 0; x < 3; ++x) b.insert(b.end(), {uint8_t(10 * x), uint8_t(100 + y), 200, uint8_t(x == 1 ? 0 : 255)});
  });
  const io::ImageRgb8 img = io::load_image(p);
  ASSERT_EQ(img.width, 3);
  ASSERT_EQ(img.height, 2);
  EXPECT_EQ(img.at(1, 1, 0), 10);
  EXPECT_EQ(img.at(1, 1, 1), 101);
  EXPECT_EQ(img.at(1, 2, 2), 200);
}

TEST(Image, PngSixteenBitTakesHighByte) {
  const std::string p = write_png("rgb16.png", 2, 1, PNG_COLOR_TYPE_RGB, 16, [](int, std::vector<uint8_t>& b) {
    b = {0x12, 0xff, 0x34, 0x00, 0xab, 0x80, /**/ 0xff, 0xff, 0x00, 0x01, 0x7f, 0xff};
  });
  const io::ImageRgb8 img = io::load_image(p);
  EXPECT_EQ(std::vector<uint8_t>(img.rgb.begin(), img.rgb.end()), (std::vector<uint8_t>{0x12, 0x34, 0xab, 0xff, 0x00, 0x7f}));
}

TEST(Image, PngGreyAndLowBitGreyAreReplicated) {
  const std::string p8 = write_png("grey.png", 2, 1, PNG_COLOR_TYPE_GRAY, 8, [](int, std::vector<uint8_t>& b) { b = {7, 250}; });
  io::ImageRgb8 img = io::load_image(p8);
  EXPECT_EQ(img.rgb, (std::vector<uint8_t>{7, 7, 7, 250, 250, 250}));
  // 2-bit grey 0..3 expands to 0, 85, 170, 255.
  const std::string p2 = write_png("grey2.png", 4, 1, PNG_COLOR_TYPE_GRAY, 2, [](int, std::vector<uint8_t>& b) { b = {0x1b}; });
  img = io::load_image(p2);
  EXPECT_EQ(img.rgb, (std::vector<uint8_t>{0, 0, 0, 85, 85, 85, 170, 170, 170, 255, 255, 255}));
  const std::string pa = write_png("greya.png", 1, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, [](int, std::vector<uint8_t>& b) { b = {99, 0}; });
  EXPECT_EQ(io::load_image(pa).rgb, (std::vector<uint8_t>{99, 99, 99}));
}

TEST(Image, PngPaletteWithTransparency) {
  const std::vector<png_color> pal = {{255, 0, 0}, {0, 255, 0}, {1, 2, 3}};
  const std::string p = write_png("pal.png", 3, 1, PNG_COLOR_TYPE_PALETTE, 8,
                                  [](int, std::vector<uint8_t>& b) { b = {2, 0, 1}; }, pal, {255, 0, 128});
  EXPECT_EQ(io::load_image(p).rgb, (std::vector<uint8_t>{1, 2, 3, 255, 0, 0, 0, 255, 0}));
}

TEST(Image, FixturePhotosDecode) {
  const io::ImageRgb8 cat = io::load_image(kImages + "chelsea.png");
  EXPECT_EQ(cat.width, 451);
  EXPECT_EQ(cat.height, 300);
  const io::ImageRgb8 rocket = io::load_image(kImages + "rocket.jpg");
  EXPECT_EQ(rocket.width, 640);
  EXPECT_EQ(rocket.height, 427);
  const io::ImageRgb8 logo = io::load_image(kImages + "llama1-logo.png");
  EXPECT_EQ(logo.width, 1500);
  EXPECT_EQ(logo.height, 500);
}

TEST(Image, SaveThenLoadRoundTrips) {
  io::ImageRgb8 img;
  img.width = 5;
  img.height = 3;
  for (int i = 0; i < 45; ++i) img.rgb.push_back(uint8_t(i * 37));
  const std::string p = test::temp_path("roundtrip.png");
  io::save_png(p, img);
  EXPECT_EQ(io::load_image(p).rgb, img.rgb);
}

TEST(Image, DamagedFilesGiveClearErrors) {
  expect_error(kImages + "truncated.jpg", "JPEG");
  // A real JPEG cut at every tenth of its length, and a real PNG likewise.
  for (const char* name : {"rocket.jpg", "chelsea.png"}) {
    const std::string bytes = test::read_file(kImages + name);
    for (int part = 1; part < 10; ++part) {
      const std::string p = test::temp_path(std::string("cut_") + std::to_string(part) + "_" + name);
      std::ofstream(p, std::ios::binary) << bytes.substr(0, bytes.size() * size_t(part) / 10);
      expect_error(p, "");
    }
  }
  const std::string empty = test::temp_path("empty.png");
  std::ofstream(empty, std::ios::binary) << "";
  expect_error(empty, "empty");
  const std::string text = test::temp_path("text.png");
  std::ofstream(text, std::ios::binary) << "hello, not an image";
  expect_error(text, "not a PNG or JPEG");
}

TEST(Image, AbsurdDeclaredSizeIsRefusedBeforeAllocating) {
  // A valid PNG header declaring 100000 x 100000 pixels, with no data after it.
  const std::string p = write_png("big.png", 1, 1, PNG_COLOR_TYPE_RGB, 8, [](int, std::vector<uint8_t>& b) { b = {1, 2, 3}; });
  const std::string bytes = test::with_png_size(test::read_file(p), 100000, 100000);
  const std::string q = test::temp_path("big2.png");
  std::ofstream(q, std::ios::binary) << bytes;
  expect_error(q, "limit");
}

// Under the pixel limit but far more than the file can hold: refused from the header alone (the
// 112 KB rocket.jpg declaring 13000 x 13000 used to take 535 MB before failing as truncated).
TEST(Image, SmallFileDeclaringLargeImageIsRefusedFromItsHeader) {
  const std::string rocket = test::read_file(kImages + "rocket.jpg");
  const std::string j = test::temp_path("rocket13000.jpg");
  std::ofstream(j, std::ios::binary) << test::with_jpeg_size(rocket, 13000, 13000);
  expect_error(j, "JPEG declares 13000x13000 pixels");
  expect_error(j, "more than the file's 112525 bytes");
  // A progressive JPEG (a tiny committed fuzzing seed) likewise.
  const std::string prog = test::temp_path("progressive13000.jpg");
  std::ofstream(prog, std::ios::binary) << test::with_jpeg_size(test::read_file(OCELLUS_TESTS_DIR "/../fuzz/seeds/image/progressive.jpg"), 13000, 13000);
  expect_error(prog, "JPEG declares 13000x13000 pixels");
  // An arithmetic-coded one (no per-block minimum; libjpeg pads its missing data silently).
  const std::string arith = test::temp_path("arith13000.jpg");
  std::ofstream(arith, std::ios::binary) << test::with_jpeg_size(test::read_file(OCELLUS_TESTS_DIR "/../fuzz/seeds/image/arith.jpg"), 13000, 13000);
  expect_error(arith, "arithmetic-coded JPEG declares 13000x13000 pixels");
  EXPECT_EQ(io::load_image(OCELLUS_TESTS_DIR "/../fuzz/seeds/image/arith.jpg").width, 8);
  // The real size decodes: the bound does not refuse what the file does hold.
  EXPECT_EQ(io::load_image(kImages + "rocket.jpg").width, 640);

  const std::string png = test::read_file(kImages + "chelsea.png");
  const std::string p = test::temp_path("chelsea13000.png");
  std::ofstream(p, std::ios::binary) << test::with_png_size(png, 13000, 13000);
  expect_error(p, "PNG declares 13000x13000 pixels");
  // A uniform image compresses about as well as deflate allows, and still decodes.
  const std::string flat = write_png("flat.png", 2000, 2000, PNG_COLOR_TYPE_RGB, 8,
                                     [](int, std::vector<uint8_t>& b) { b.assign(6000, 200); });
  EXPECT_LT(test::read_file(flat).size(), size_t(40000));
  const io::ImageRgb8 img = io::load_image(flat);
  EXPECT_EQ(img.width, 2000);
  EXPECT_EQ(img.at(1999, 1999, 2), 200);
}

TEST(Image, DirectoryIsNamedAsOne) {
  expect_error(kImages.substr(0, kImages.size() - 1), "is a directory");
}
