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
  if (cp < 0x80) return void(out += char(cp));
  const int tail = cp < 0x800 ? 1 : cp < 0x10000 ? 2 : 3;  // continuation bytes, 6 bits each
  static const unsigned char kLead[] = {0, 0xc0, 0xe0, 0xf0};
  out += char(kLead[tail] | (cp >> (6 * tail)));
  for (int k = tail - 1; k >= 0; --k) out += char(0x80 | ((cp >> (6 * k)) & 0x3f));
}

std::string utf8_take_valid(std::string& pending) {
  static const char kReplacement[] = "\xef\xbf\xbd";
  std::string out;
  size_t i = 0;
  const size_t n = pending.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(pending[i]);
    if (c < 0x80) {
      out += char(c), ++i;
      continue;
    }
    // The sequence's length and the range its second byte must be in (Unicode Table 3-7).
    int len = 0;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) len = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    if (len == 0) {  // a stray continuation byte or a byte that never starts a character
      out += kReplacement, ++i;
      continue;
    }
    size_t k = 1;  // bytes of the sequence that are well-formed so far
    while (k < size_t(len) && i + k < n) {
      const unsigned char d = static_cast<unsigned char>(pending[i + k]);
      if (d < (k == 1 ? lo : 0x80) || d > (k == 1 ? hi : 0xbf)) break;
      ++k;
    }
    if (k == size_t(len)) {
      out.append(pending, i, k), i += k;
    } else if (i + k == n) {  // well-formed so far and cut off by the end: may still complete
      break;
    } else {
      out += kReplacement, i += k;  // one U+FFFD for the maximal subpart
    }
  }
  pending.erase(0, i);
  return out;
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
