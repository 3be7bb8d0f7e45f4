// Internal to the pre-tokenizers: text decoded to code points with their categories, the
// regex-like building blocks, and one matcher per regex of every supported family.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "runtime/text/unicode.h"

namespace ktx::pretok {

// `text` as code points. An invalid UTF-8 byte becomes one U+FFFD code point of its own, so
// byte offsets (offs[i] .. offs[i+1]) always cover the input exactly.
struct CodepointText {
  std::vector<uint32_t> cps;
  std::vector<GeneralCategory> cats;
  std::vector<size_t> offs;  // n + 1 entries: byte offset of each code point, then the size

  explicit CodepointText(std::string_view text);
  size_t size() const { return cps.size(); }

  bool letter(size_t i) const { return is_letter(cats[i]); }
  bool number(size_t i) const { return is_number(cats[i]); }
  bool mark(size_t i) const { return is_mark(cats[i]); }
  bool punct(size_t i) const { return is_punct(cats[i]); }
  bool symbol(size_t i) const { return is_symbol(cats[i]); }
  bool space(size_t i) const { return is_white_space(cps[i]); }        // \s
  bool newline(size_t i) const { return cps[i] == '\r' || cps[i] == '\n'; }  // [\r\n]
  // [^\s\p{L}\p{N}]: the "other" class of GPT-2 style regexes.
  bool other(size_t i) const { return !space(i) && !letter(i) && !number(i); }
};

// A matcher tries one regex at code point `pos` of the fragment [.., end) and returns the end of
// the match, or `pos` when the regex does not match there (none of ours matches empty).
using Matcher = size_t (*)(const CodepointText& t, size_t pos, size_t end);

// First index in [pos, end) where pred fails (the end of a greedy `X*` run).
template <typename Pred>
size_t run_while(size_t pos, size_t end, Pred pred) {
  while (pos < end && pred(pos)) ++pos;
  return pos;
}

// Length of an English contraction at pos: 's|'t|'re|'ve|'m|'ll|'d (optionally any case).
size_t contraction_len(const CodepointText& t, size_t pos, size_t end, bool any_case);

// The whitespace alternatives that end the Llama-3 family of regexes:
//   \s*[\r\n]+ | \s+(?!\S) | \s+        (with_newline_rule, with_fallback)
// GPT-2's regex has only \s+(?!\S).
size_t match_space_tail(const CodepointText& t, size_t pos, size_t end, bool with_newline_rule,
                        bool with_fallback);

// One matcher per regex (pretokenizer_match.cpp, pretokenizer_match_cjk.cpp); the regex each
// implements is written above its definition.
size_t match_gpt2(const CodepointText& t, size_t pos, size_t end);
size_t match_llama3(const CodepointText& t, size_t pos, size_t end);
size_t match_qwen2(const CodepointText& t, size_t pos, size_t end);
size_t match_gpt4o(const CodepointText& t, size_t pos, size_t end);
size_t match_deepseek_v3(const CodepointText& t, size_t pos, size_t end);
size_t match_single_newline(const CodepointText& t, size_t pos, size_t end);
size_t match_deepseek_llm_letters(const CodepointText& t, size_t pos, size_t end);
size_t match_deepseek_llm_punct(const CodepointText& t, size_t pos, size_t end);
size_t match_trailing_space(const CodepointText& t, size_t pos, size_t end);
size_t match_cjk_deepseek_llm(const CodepointText& t, size_t pos, size_t end);
size_t match_cjk_deepseek_v3(const CodepointText& t, size_t pos, size_t end);
size_t match_space_letters(const CodepointText& t, size_t pos, size_t end);
size_t match_space_punct(const CodepointText& t, size_t pos, size_t end);
size_t match_numbers(const CodepointText& t, size_t pos, size_t end);
size_t match_one_number(const CodepointText& t, size_t pos, size_t end);
size_t match_up_to_3_numbers(const CodepointText& t, size_t pos, size_t end);
size_t match_three_ascii_digits(const CodepointText& t, size_t pos, size_t end);
size_t match_falcon_punct(const CodepointText& t, size_t pos, size_t end);
size_t match_default_punct(const CodepointText& t, size_t pos, size_t end);

}  // namespace ktx::pretok
