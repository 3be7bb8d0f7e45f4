// Unicode facts the tokenizer needs: UTF-8 decoding and encoding, the general category of any
// code point (from a generated range table), the White_Space property, and GPT-2's reversible
// byte <-> printable-character mapping used by byte-level BPE vocabularies.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ktx {

// Unicode general categories. The order is the generator's (scripts/gen_unicode_data.py).
enum class GeneralCategory : uint8_t {
  Cn, Lu, Ll, Lt, Lm, Lo, Mn, Mc, Me, Nd, Nl, No,
  Pc, Pd, Ps, Pe, Pi, Pf, Po, Sm, Sc, Sk, So,
  Zs, Zl, Zp, Cc, Cf, Cs, Co,
};

GeneralCategory general_category(uint32_t cp);

// Major classes, as regex \p{L}, \p{M}, \p{N}, \p{P}, \p{S} see them.
inline bool is_letter(GeneralCategory c) { return c >= GeneralCategory::Lu && c <= GeneralCategory::Lo; }
inline bool is_mark(GeneralCategory c) { return c >= GeneralCategory::Mn && c <= GeneralCategory::Me; }
inline bool is_number(GeneralCategory c) { return c >= GeneralCategory::Nd && c <= GeneralCategory::No; }
inline bool is_punct(GeneralCategory c) { return c >= GeneralCategory::Pc && c <= GeneralCategory::Po; }
inline bool is_symbol(GeneralCategory c) { return c >= GeneralCategory::Sm && c <= GeneralCategory::So; }

// The White_Space property: what regex \s matches in the Unicode-aware engines (Oniguruma,
// PCRE2 with UCP) that the reference tokenizers use.
bool is_white_space(uint32_t cp);

// Length of the UTF-8 sequence a lead byte announces (1 for continuation/invalid bytes, so a
// scan always advances).
int utf8_seq_len(uint8_t lead);

// Decode one code point at s[pos]. Returns false for an invalid or truncated sequence, in which
// case *cp = U+FFFD and *len = 1 (the bad byte is consumed alone).
bool utf8_decode(std::string_view s, size_t pos, uint32_t* cp, size_t* len);

void utf8_append(std::string& out, uint32_t cp);

// GPT-2 byte-level mapping: each byte becomes a printable code point (printable Latin-1 bytes
// map to themselves, the others to U+0100 and up), so any byte string is a valid text.
uint32_t byte_to_unicode(uint8_t b);
// Inverse of byte_to_unicode; returns -1 for a code point that no byte maps to.
int unicode_to_byte(uint32_t cp);

// Length of a trailing sequence that is a valid but incomplete UTF-8 character (0 if the
// string does not end inside a character). A streaming decoder holds those bytes back.
size_t utf8_incomplete_tail(std::string_view bytes);

// Copy `bytes`, replacing each invalid byte by U+FFFD.
std::string utf8_sanitize(std::string_view bytes);

}  // namespace ktx
