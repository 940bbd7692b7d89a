#include "ocellus/text/unicode.h"

#include <unicode/uchar.h>

#include <array>

namespace ocellus::text {

uint32_t utf8_decode(std::string_view s, size_t i, int* len) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  const int n = utf8_len(c);
  if (n == 1 || i + size_t(n) > s.size()) {
    *len = 1;
    return c < 0x80 ? c : 0xfffd;
  }
  uint32_t cp = n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
  for (int k = 1; k < n; ++k) {
    const unsigned char d = static_cast<unsigned char>(s[i + size_t(k)]);
    if ((d & 0xc0) != 0x80) {
      *len = 1;
      return 0xfffd;
    }
    cp = (cp << 6) | (d & 0x3f);
  }
  *len = n;
  return cp;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xc0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += char(0xe0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  } else {
    out += char(0xf0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3f));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  }
}

size_t utf8_incomplete_tail(std::string_view s) {
  // Look back at most 3 bytes for a lead byte whose sequence is not complete.
  for (size_t k = 1; k <= 3 && k <= s.size(); ++k) {
    const unsigned char c = static_cast<unsigned char>(s[s.size() - k]);
    if ((c & 0xc0) == 0x80) continue;  // continuation byte: keep looking for the lead
    const int n = utf8_len(c);
    return n > int(k) ? k : 0;
  }
  return 0;
}

// ASCII answers without a library call: the common case in every text.
bool is_letter(uint32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return (U_GET_GC_MASK(UChar32(cp)) & U_GC_L_MASK) != 0;
}

bool is_number(uint32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return (U_GET_GC_MASK(UChar32(cp)) & U_GC_N_MASK) != 0;
}

bool is_whitespace(uint32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0d);
  return u_hasBinaryProperty(UChar32(cp), UCHAR_WHITE_SPACE);
}

namespace {
struct ByteMap {
  std::array<std::string, 256> to;
  std::array<int, 512> from;  // code points of the alphabet are < 0x144
  ByteMap() {
    from.fill(-1);
    uint32_t k = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
      const uint32_t cp = printable ? uint32_t(b) : 256 + k++;
      utf8_append(to[size_t(b)], cp);
      from[cp] = b;
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}
}  // namespace

const std::string& byte_to_unicode(uint8_t b) { return byte_map().to[b]; }

int unicode_to_byte(uint32_t cp) { return cp < 512 ? byte_map().from[cp] : -1; }

}  // namespace ocellus::text
