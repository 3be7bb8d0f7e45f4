// UTF-8 coding, general-category lookup over the generated run table, White_Space, and the
// GPT-2 byte-level mapping. Invalid UTF-8 never stops a scan: a bad byte is consumed alone and
// reported, so tokenizers can keep every input byte.
#include "runtime/text/unicode.h"

#include <algorithm>
#include <array>

#include "runtime/text/unicode_data.h"

namespace ktx {

GeneralCategory general_category(uint32_t cp) {
  using unicode_detail::kCategoryRuns;
  using unicode_detail::kNumCategoryRuns;
  if (cp > 0x10FFFF) return GeneralCategory::Cn;
  // The last run whose first code point is <= cp.
  const auto* end = kCategoryRuns + kNumCategoryRuns;
  const auto* it = std::upper_bound(kCategoryRuns, end, cp,
                                    [](uint32_t v, const auto& run) { return v < run.first; });
  return static_cast<GeneralCategory>((it - 1)->category);
}

bool is_white_space(uint32_t cp) {
  // Unicode PropList.txt, White_Space (stable since Unicode 6.3).
  if (cp >= 0x09 && cp <= 0x0D) return true;
  if (cp >= 0x2000 && cp <= 0x200A) return true;
  switch (cp) {
    case 0x20: case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F:
    case 0x205F: case 0x3000:
      return true;
    default:
      return false;
  }
}

int utf8_seq_len(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

bool utf8_decode(std::string_view s, size_t pos, uint32_t* cp, size_t* len) {
  const auto b0 = static_cast<uint8_t>(s[pos]);
  *cp = 0xFFFD;
  *len = 1;
  if (b0 < 0x80) {
    *cp = b0;
    return true;
  }
  const int n = utf8_seq_len(b0);
  if (n == 1 || pos + n > s.size()) return false;
  uint32_t v = b0 & (0x7F >> n);
  for (int k = 1; k < n; ++k) {
    const auto b = static_cast<uint8_t>(s[pos + k]);
    if ((b & 0xC0) != 0x80) return false;
    v = (v << 6) | (b & 0x3F);
  }
  static constexpr std::array<uint32_t, 5> kMin = {0, 0, 0x80, 0x800, 0x10000};
  if (v < kMin[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return false;
  *cp = v;
  *len = static_cast<size_t>(n);
  return true;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

namespace {

// GPT-2's table: bytes that are printable Latin-1 ('!'..'~', '¡'..'¬', '®'..'ÿ') keep their
// code point; the remaining 68 bytes get U+0100, U+0101, ... in increasing byte order.
struct ByteMap {
  std::array<uint32_t, 256> to_cp{};
  ByteMap() {
    uint32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      to_cp[b] = printable ? static_cast<uint32_t>(b) : next++;
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

}  // namespace

uint32_t byte_to_unicode(uint8_t b) { return byte_map().to_cp[b]; }

int unicode_to_byte(uint32_t cp) {
  if (cp < 0x100) {
    return byte_map().to_cp[cp] == cp ? static_cast<int>(cp) : -1;
  }
  if (cp < 0x100 + 68) {
    const auto& m = byte_map().to_cp;
    for (int b = 0; b < 256; ++b) {
      if (m[b] == cp) return b;
    }
  }
  return -1;
}

size_t utf8_incomplete_tail(std::string_view bytes) {
  const size_t n = bytes.size();
  // A character is at most 4 bytes, so its lead byte is among the last 3.
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto b = static_cast<uint8_t>(bytes[n - back]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    const int need = utf8_seq_len(b);
    return (need > 1 && static_cast<size_t>(need) > back) ? back : 0;
  }
  return 0;
}

std::string utf8_sanitize(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t pos = 0; pos < bytes.size();) {
    uint32_t cp = 0;
    size_t len = 0;
    if (utf8_decode(bytes, pos, &cp, &len)) {
      out.append(bytes.substr(pos, len));
    } else {
      utf8_append(out, 0xFFFD);
    }
    pos += len;
  }
  return out;
}

}  // namespace ktx
