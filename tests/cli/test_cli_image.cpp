// Bad images through the CLI: refused with one clear line and exit 1, after bounded work (the
// peak memory of the command, measured by wait4, stays near that of decoding a real photo).
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "cliutil.h"
#include "io/crafted_images.h"
#include "testutil.h"

using namespace ocellus;

namespace {

const std::string kPeer = std::string(OCELLUS_FIXTURES) + "/peer/";
const std::string kImages = std::string(OCELLUS_FIXTURES) + "/images/";

test::CliResult embed(const std::string& image) {
  return test::run_cli("embed --mmproj " + kPeer + "tiny-mmproj-clip-f32.gguf --image '" + image + "' -o " +
                       test::temp_path("embed-image.f32"));
}

// The image `name` with its header rewritten to `bytes` (as file `bad_name`) is refused with an error
// starting `message`, and the command's peak memory stays within `slack_kib` of embedding the
// real image.
void expect_refused_within(const std::string& name, const std::string& bytes, const std::string& bad_name,
                           const std::string& message, long slack_kib) {
  const std::string bad = test::temp_path(bad_name);
  std::ofstream(bad, std::ios::binary) << bytes;
  const test::CliResult good = embed(kImages + name);
  ASSERT_EQ(good.status, 0) << good.err;
  const test::CliResult r = embed(bad);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("ocellus: error: " + bad + ": " + message), std::string::npos) << r.err;
  std::printf("peak memory: embed of %s %ld KiB, of %s %ld KiB\n", name.c_str(), good.max_rss_kb, bad_name.c_str(), r.max_rss_kb);
  EXPECT_LT(r.max_rss_kb, good.max_rss_kb + slack_kib);
}

}  // namespace

// rocket.jpg (112 KB) with its frame header declaring 13000 x 13000 (169 M pixels, under the
// pixel limit): decoding would need 507 MB. The header bound refuses it first.
TEST(CliImage, SmallJpegDeclaringHugeSizeIsRefusedWithSmallMemory) {
  expect_refused_within("rocket.jpg", test::with_jpeg_size(test::read_file(kImages + "rocket.jpg"), 13000, 13000), "huge.jpg",
                        "JPEG declares 13000x13000 pixels", 32 * 1024);
}

// rocket.jpg declaring 3000 x 3000: within what 112 KB of Huffman data could hold, but its data
// runs out after about 280 rows. Memory goes to the rows decoded, not the 27 MB the header asks for.
TEST(CliImage, TruncatedJpegTakesMemoryOnlyForItsRows) {
  expect_refused_within("rocket.jpg", test::with_jpeg_size(test::read_file(kImages + "rocket.jpg"), 3000, 3000), "tall.jpg",
                        "truncated or corrupt JPEG", 12 * 1024);
}

// chelsea.png's IHDR declaring 13000 x 13000: deflate cannot expand 240 KB that far.
TEST(CliImage, SmallPngDeclaringHugeSizeIsRefusedWithSmallMemory) {
  expect_refused_within("chelsea.png", test::with_png_size(test::read_file(kImages + "chelsea.png"), 13000, 13000), "huge.png",
                        "PNG declares 13000x13000 pixels", 32 * 1024);
}

// chelsea.png (451 x 300) declaring 3000 x 3000: within deflate's bound for 240 KB, but its rows
// stop making sense at once. Memory goes to the rows read, not the 27 MB the header asks for.
TEST(CliImage, DamagedPngTakesMemoryOnlyForItsRows) {
  expect_refused_within("chelsea.png", test::with_png_size(test::read_file(kImages + "chelsea.png"), 3000, 3000), "tall.png",
                        "corrupt PNG", 12 * 1024);
}

TEST(CliImage, DirectoryAsImageSaysSo) {
  const std::string dir = kImages.substr(0, kImages.size() - 1);
  const test::CliResult r = embed(dir);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("ocellus: error: " + dir + ": is a directory"), std::string::npos) << r.err;
  // A directory where a model file is expected says the same.
  const test::CliResult m = test::run_cli("embed --mmproj " + dir + " --image " + kImages + "rocket.jpg -o x.f32");
  EXPECT_EQ(m.status, 1);
  EXPECT_NE(m.err.find("is a directory"), std::string::npos) << m.err;
}
