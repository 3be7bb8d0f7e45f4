// Matchers of the o200k (gpt-4o) and DeepSeek regexes, and the small single-purpose regexes
// that the sequence pre-tokenizers (DeepSeek LLM/Coder/V3, Falcon, StarCoder) chain. As in
// pretokenizer_match.cpp, each function follows its regex's alternation order and backtracking.
#include <algorithm>
#include <utility>

#include "runtime/text/pretokenizer_matchers.h"

namespace ktx::pretok {

namespace {

using Range = std::pair<uint32_t, uint32_t>;

template <size_t N>
bool in_ranges(uint32_t cp, const Range (&ranges)[N]) {
  for (const auto& r : ranges) {
    if (cp >= r.first && cp <= r.second) return true;
  }
  return false;
}

// DeepSeek LLM's letter class (the cased letters, Unicode LC, spelled out as ranges in its
// tokenizer.json: [A-Za-zµÀ-ÖØ-öø-ƺ...]).
constexpr Range kDeepseekLetters[] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA},
    {0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377},
    {0x37B, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C},
    {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556},
    {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF},
    {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
    {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE},
    {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC},
    {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113},
    {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128},
    {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149},
    {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE},
    {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787},
    {0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};

// DeepSeek LLM's punctuation class [!-/:-~！-／：-～‘-‟　-。].
constexpr Range kDeepseekPunct[] = {
    {0x21, 0x2F}, {0x3A, 0x7E}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E}, {0x2018, 0x201F},
    {0x3000, 0x3002},
};

// [一-龥ࠀ-一가-퟿] (DeepSeek LLM and Coder) and [一-龥぀-ゟ゠-ヿ] (DeepSeek-V3).
constexpr Range kCjkDeepseekLlm[] = {{0x4E00, 0x9FA5}, {0x0800, 0x4E00}, {0xAC00, 0xD7FF}};
constexpr Range kCjkDeepseekV3[] = {{0x4E00, 0x9FA5}, {0x3040, 0x309F}, {0x30A0, 0x30FF}};

bool is_ascii_punct(uint32_t c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
         (c >= 0x7B && c <= 0x7E);
}
bool is_ascii_alpha(uint32_t c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

// A greedy `X+` run at pos, or no match.
template <typename Pred>
size_t match_run(size_t pos, size_t end, Pred pred) {
  return pred(pos) ? run_while(pos, end, pred) : pos;
}

// `\s?X+` : an optional leading whitespace character, then a greedy run of X.
template <typename Pred>
size_t match_ws_prefixed_run(const CodepointText& t, size_t pos, size_t end, Pred pred) {
  size_t s = pos;
  if (t.space(pos) && pos + 1 < end && pred(pos + 1)) s = pos + 1;
  return pred(s) ? run_while(s, end, pred) : pos;
}

// `A*B+` at s: A* backs off until B+ can match. Returns the end, or s if it cannot match.
template <typename PredA, typename PredB>
size_t match_star_plus(size_t s, size_t end, PredA a, PredB b) {
  const size_t a_end = run_while(s, end, a);
  if (a_end < end && b(a_end)) return run_while(a_end, end, b);
  // Backtracking: B+ starts at the last B inside the A run and cannot extend past it.
  for (size_t i = a_end; i > s; --i) {
    if (b(i - 1)) return i;
  }
  return s;
}

}  // namespace

// [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|...|'d)?
// |[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|...|'d)?
// |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
size_t match_gpt4o(const CodepointText& t, size_t pos, size_t end) {
  using GC = GeneralCategory;
  auto upper = [&](size_t i) {  // Lu Lt Lm Lo M
    const GC c = t.cats[i];
    return c == GC::Lu || c == GC::Lt || c == GC::Lm || c == GC::Lo || t.mark(i);
  };
  auto lower = [&](size_t i) {  // Ll Lm Lo M
    const GC c = t.cats[i];
    return c == GC::Ll || c == GC::Lm || c == GC::Lo || t.mark(i);
  };
  const bool has_prefix = !t.newline(pos) && !t.letter(pos) && !t.number(pos) && pos + 1 < end;
  auto with_suffix = [&](size_t e) { return e + contraction_len(t, e, end, true); };
  // First alternative, with then without the optional prefix character.
  if (has_prefix) {
    size_t e = match_star_plus(pos + 1, end, upper, lower);
    if (e > pos + 1) return with_suffix(e);
  }
  if (size_t e = match_star_plus(pos, end, upper, lower); e > pos) return with_suffix(e);
  // Second alternative: A+B*.
  for (size_t s : {has_prefix ? pos + 1 : end, pos}) {
    if (s < end && upper(s)) {
      const size_t a_end = run_while(s, end, upper);
      return with_suffix(run_while(a_end, end, lower));
    }
  }
  if (t.number(pos)) {
    return run_while(pos, std::min(end, pos + 3), [&](size_t i) { return t.number(i); });
  }
  size_t s = pos;
  if (t.cps[pos] == ' ' && pos + 1 < end && t.other(pos + 1)) s = pos + 1;
  if (t.other(s)) {
    const size_t e = run_while(s, end, [&](size_t i) { return t.other(i); });
    return run_while(e, end, [&](size_t i) { return t.newline(i) || t.cps[i] == '/'; });
  }
  return match_space_tail(t, pos, end, true, true);
}

// [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
// | ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
size_t match_deepseek_v3(const CodepointText& t, size_t pos, size_t end) {
  if (is_ascii_punct(t.cps[pos]) && pos + 1 < end && is_ascii_alpha(t.cps[pos + 1])) {
    return run_while(pos + 1, end, [&](size_t i) { return is_ascii_alpha(t.cps[i]); });
  }
  auto letter_or_mark = [&](size_t i) { return t.letter(i) || t.mark(i); };
  size_t s = pos;
  if (!t.newline(pos) && !t.letter(pos) && !t.punct(pos) && !t.symbol(pos) && pos + 1 < end &&
      letter_or_mark(pos + 1)) {
    s = pos + 1;
  }
  if (letter_or_mark(s)) return run_while(s, end, letter_or_mark);
  auto punct_or_symbol = [&](size_t i) { return t.punct(i) || t.symbol(i); };
  s = pos;
  if (t.cps[pos] == ' ' && pos + 1 < end && punct_or_symbol(pos + 1)) s = pos + 1;
  if (punct_or_symbol(s)) {
    const size_t e = run_while(s, end, punct_or_symbol);
    return run_while(e, end, [&](size_t i) { return t.newline(i); });
  }
  return match_space_tail(t, pos, end, true, true);
}

// [\r\n]
size_t match_single_newline(const CodepointText& t, size_t pos, size_t /*end*/) {
  return t.newline(pos) ? pos + 1 : pos;
}

// \s?[A-Za-zµÀ-ÖØ-öø-ƺ...]+ (DeepSeek LLM)
size_t match_deepseek_llm_letters(const CodepointText& t, size_t pos, size_t end) {
  return match_ws_prefixed_run(t, pos, end,
                               [&](size_t i) { return in_ranges(t.cps[i], kDeepseekLetters); });
}

// \s?[!-/:-~！-／：-～‘-‟　-。]+ (DeepSeek LLM)
size_t match_deepseek_llm_punct(const CodepointText& t, size_t pos, size_t end) {
  return match_ws_prefixed_run(t, pos, end,
                               [&](size_t i) { return in_ranges(t.cps[i], kDeepseekPunct); });
}

// \s+$ : whitespace reaching the end of the fragment.
size_t match_trailing_space(const CodepointText& t, size_t pos, size_t end) {
  const size_t e = run_while(pos, end, [&](size_t i) { return t.space(i); });
  return e == end ? e : pos;
}

// [一-龥ࠀ-一가-퟿]+
size_t match_cjk_deepseek_llm(const CodepointText& t, size_t pos, size_t end) {
  return match_run(pos, end, [&](size_t i) { return in_ranges(t.cps[i], kCjkDeepseekLlm); });
}

// [一-龥぀-ゟ゠-ヿ]+
size_t match_cjk_deepseek_v3(const CodepointText& t, size_t pos, size_t end) {
  return match_run(pos, end, [&](size_t i) { return in_ranges(t.cps[i], kCjkDeepseekV3); });
}

// \s?\p{L}+
size_t match_space_letters(const CodepointText& t, size_t pos, size_t end) {
  return match_ws_prefixed_run(t, pos, end, [&](size_t i) { return t.letter(i); });
}

// \s?\p{P}+
size_t match_space_punct(const CodepointText& t, size_t pos, size_t end) {
  return match_ws_prefixed_run(t, pos, end, [&](size_t i) { return t.punct(i); });
}

// \p{N}+
size_t match_numbers(const CodepointText& t, size_t pos, size_t end) {
  return match_run(pos, end, [&](size_t i) { return t.number(i); });
}

// \p{N}
size_t match_one_number(const CodepointText& t, size_t pos, size_t /*end*/) {
  return t.number(pos) ? pos + 1 : pos;
}

// \p{N}{1,3}
size_t match_up_to_3_numbers(const CodepointText& t, size_t pos, size_t end) {
  return match_run(pos, std::min(end, pos + 3), [&](size_t i) { return t.number(i); });
}

// [0-9][0-9][0-9]
size_t match_three_ascii_digits(const CodepointText& t, size_t pos, size_t end) {
  if (pos + 3 > end) return pos;
  for (size_t i = pos; i < pos + 3; ++i) {
    if (t.cps[i] < '0' || t.cps[i] > '9') return pos;
  }
  return pos + 3;
}

// [\p{P}\$\+<=>\^~\|`]+ (Falcon)
size_t match_falcon_punct(const CodepointText& t, size_t pos, size_t end) {
  return match_run(pos, end, [&](size_t i) {
    const uint32_t c = t.cps[i];
    return t.punct(i) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' ||
           c == '~' || c == '|' || c == '`';
  });
}

// [\p{P}\$\+<=>\^~\|]+ (llama.cpp's default sequence)
size_t match_default_punct(const CodepointText& t, size_t pos, size_t end) {
  return match_run(pos, end, [&](size_t i) {
    const uint32_t c = t.cps[i];
    return t.punct(i) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' ||
           c == '~' || c == '|';
  });
}

}  // namespace ktx::pretok
