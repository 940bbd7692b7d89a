// Streamed text is always valid UTF-8: an unfinished character waits for its next bytes, and
// bytes that can never form one become U+FFFD, the same however the bytes are split into pieces.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "ocellus/text/unicode.h"

namespace ocellus::text {
namespace {

const std::string R = "\xef\xbf\xbd";  // U+FFFD

std::string take_all(std::string s) {
  std::string out = utf8_take_valid(s);
  if (!s.empty()) out += R;  // what the stream's flush writes for an unfinished tail
  return out;
}

// Whether s is well-formed UTF-8 (Unicode Table 3-7), checked independently of the code under test.
bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned c = static_cast<unsigned char>(s[i]);
    uint32_t cp = 0;
    size_t n = 0;
    if (c < 0x80) cp = c, n = 1;
    else if ((c >> 5) == 6) cp = c & 0x1f, n = 2;
    else if ((c >> 4) == 14) cp = c & 0x0f, n = 3;
    else if ((c >> 3) == 30) cp = c & 0x07, n = 4;
    else return false;
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      const unsigned d = static_cast<unsigned char>(s[i + k]);
      if ((d >> 6) != 2) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n;
  }
  return true;
}

TEST(Utf8Stream, HoldsAnUnfinishedCharacter) {
  std::string p = "ab\xe4\xb8";  // "ab" and two of the three bytes of 世
  EXPECT_EQ(utf8_take_valid(p), "ab");
  EXPECT_EQ(p, "\xe4\xb8");
  p += "\x96";
  EXPECT_EQ(utf8_take_valid(p), "\xe4\xb8\x96");
  EXPECT_TRUE(p.empty());
}

TEST(Utf8Stream, ReplacesWhatCanNeverBeACharacter) {
  // A garbage model's repeated lead bytes (the case seen: e8 e8 ...): each is cut off by the next.
  EXPECT_EQ(take_all("\xe8\xe8\xe8" "A"), R + R + R + "A");
  EXPECT_EQ(take_all("\x80" "x"), R + "x");                    // a stray continuation byte
  EXPECT_EQ(take_all("\xc0\xaf"), R + R);                      // overlong: C0 never starts a character
  EXPECT_EQ(take_all("\xed\xa0\x80"), R + R + R);              // a surrogate (ED A0): ED alone is the subpart
  EXPECT_EQ(take_all("\xf4\x90\x80\x80"), R + R + R + R);      // past U+10FFFF
  EXPECT_EQ(take_all("\xe4\xb8" "A"), R + "A");                // one U+FFFD for a cut-off sequence's bytes
  EXPECT_EQ(take_all("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");  // a 4-byte character passes
  EXPECT_EQ(take_all("\xff\xfe"), R + R);
}

TEST(Utf8Stream, AnySplitGivesValidTextAndTheSameText) {
  std::mt19937 rng(7);
  // Bytes biased towards the interesting ones: leads, continuations, ASCII.
  const unsigned char alphabet[] = {'a', ' ', 0x80, 0x8f, 0x9f, 0xa0, 0xbf, 0xc2, 0xdf, 0xe0, 0xe4, 0xed,
                                    0xef, 0xf0, 0xf4, 0xf5, 0xc0, 0xff, 0xb8, 0x96};
  for (int trial = 0; trial < 2000; ++trial) {
    std::string bytes;
    const int n = int(rng() % 24);
    for (int i = 0; i < n; ++i) bytes += char(alphabet[rng() % sizeof alphabet]);
    const std::string whole = take_all(bytes);
    ASSERT_TRUE(valid_utf8(whole)) << trial;
    // The same bytes in random pieces, as tokens arrive.
    std::string pending, out;
    for (size_t i = 0; i < bytes.size();) {
      const size_t k = 1 + rng() % 4;
      pending += bytes.substr(i, k);
      const std::string piece = utf8_take_valid(pending);
      ASSERT_TRUE(valid_utf8(piece)) << trial;
      out += piece;
      i += k;
    }
    if (!pending.empty()) out += R;
    EXPECT_EQ(out, whole) << trial;
  }
}

}  // namespace
}  // namespace ocellus::text
