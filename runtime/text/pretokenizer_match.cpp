// The building blocks shared by the pre-tokenizer matchers, and the matchers of the GPT-2 and
// Llama-3 regex families. Each matcher mirrors its regex's alternation order and backtracking:
// the comment above it gives the regex, the code takes the first alternative that matches,
// exactly as a backtracking engine (Oniguruma in HF tokenizers) would.
#include "runtime/text/pretokenizer_matchers.h"

#include <algorithm>

namespace ktx::pretok {

CodepointText::CodepointText(std::string_view text) {
  cps.reserve(text.size());
  offs.reserve(text.size() + 1);
  for (size_t pos = 0; pos < text.size();) {
    uint32_t cp = 0;
    size_t len = 0;
    utf8_decode(text, pos, &cp, &len);  // invalid byte -> U+FFFD of length 1
    cps.push_back(cp);
    offs.push_back(pos);
    pos += len;
  }
  offs.push_back(text.size());
  cats.reserve(cps.size());
  for (uint32_t cp : cps) cats.push_back(general_category(cp));
}

size_t contraction_len(const CodepointText& t, size_t pos, size_t end, bool any_case) {
  if (pos + 1 >= end || t.cps[pos] != '\'') return 0;
  auto lower = [&](size_t i) {
    uint32_t c = t.cps[i];
    return (any_case && c >= 'A' && c <= 'Z') ? c + 32 : c;
  };
  const uint32_t c1 = lower(pos + 1);
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  if (pos + 2 >= end) return 0;
  const uint32_t c2 = lower(pos + 2);
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  return 0;
}

size_t match_space_tail(const CodepointText& t, size_t pos, size_t end, bool with_newline_rule,
                        bool with_fallback) {
  if (!t.space(pos)) return pos;
  const size_t run_end = run_while(pos, end, [&](size_t i) { return t.space(i); });
  if (with_newline_rule) {
    // \s*[\r\n]+ : \s* backs off until a newline follows, so the match ends just after the
    // last newline of the whitespace run.
    for (size_t j = run_end; j > pos; --j) {
      if (t.newline(j - 1)) return j;
    }
  }
  // \s+(?!\S) : the whole run at the end of the fragment, else the run minus its last char.
  if (run_end == end) return run_end;
  if (run_end - pos >= 2) return run_end - 1;
  return with_fallback ? run_end : pos;  // \s+
}

namespace {

// ` ?X+` : an optional leading space, then a greedy run of class X.
template <typename Pred>
size_t match_space_prefixed_run(const CodepointText& t, size_t pos, size_t end, Pred pred) {
  size_t s = pos;
  if (t.cps[pos] == ' ' && pos + 1 < end && pred(pos + 1)) s = pos + 1;
  if (!pred(s)) return pos;
  return run_while(s, end, pred);
}

}  // namespace

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
size_t match_gpt2(const CodepointText& t, size_t pos, size_t end) {
  if (size_t n = contraction_len(t, pos, end, false)) return pos + n;
  size_t e = match_space_prefixed_run(t, pos, end, [&](size_t i) { return t.letter(i); });
  if (e > pos) return e;
  e = match_space_prefixed_run(t, pos, end, [&](size_t i) { return t.number(i); });
  if (e > pos) return e;
  e = match_space_prefixed_run(t, pos, end, [&](size_t i) { return t.other(i); });
  if (e > pos) return e;
  return match_space_tail(t, pos, end, false, false);
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,MAX}
//   | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// MAX is 3 for Llama-3 and 1 for Qwen2.
template <size_t kMaxDigits>
size_t match_llama3_family(const CodepointText& t, size_t pos, size_t end) {
  if (size_t n = contraction_len(t, pos, end, true)) return pos + n;
  auto letter = [&](size_t i) { return t.letter(i); };
  size_t s = pos;
  if (!t.newline(pos) && !t.letter(pos) && !t.number(pos) && pos + 1 < end && t.letter(pos + 1)) {
    s = pos + 1;
  }
  if (t.letter(s)) return run_while(s, end, letter);
  if (t.number(pos)) {
    return run_while(pos, std::min(end, pos + kMaxDigits), [&](size_t i) { return t.number(i); });
  }
  size_t e = match_space_prefixed_run(t, pos, end, [&](size_t i) { return t.other(i); });
  if (e > pos) return run_while(e, end, [&](size_t i) { return t.newline(i); });
  return match_space_tail(t, pos, end, true, true);
}

size_t match_llama3(const CodepointText& t, size_t pos, size_t end) {
  return match_llama3_family<3>(t, pos, end);
}

size_t match_qwen2(const CodepointText& t, size_t pos, size_t end) {
  return match_llama3_family<1>(t, pos, end);
}

}  // namespace ktx::pretok
