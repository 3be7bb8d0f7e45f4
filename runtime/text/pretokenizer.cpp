// Pre-tokenizer selection and the split driver. A pre-tokenizer is a sequence of regexes; each
// one splits every fragment left by the previous one into its matches and the text between
// them, both kept (HF tokenizers' Split with "isolated" behaviour, llama.cpp's
// unicode_regex_split). Matching restarts at each fragment, so lookaheads and `$` see only the
// fragment.
#include "runtime/text/pretokenizer.h"

#include <array>
#include <initializer_list>
#include <utility>

#include "runtime/text/pretokenizer_matchers.h"

namespace ktx {

namespace {

using pretok::CodepointText;
using pretok::Matcher;

struct NamedKind {
  std::string_view name;
  PreTokenizerKind kind;
};

// tokenizer.ggml.pre values, as llama.cpp's converter writes them.
constexpr std::array<NamedKind, 24> kNames = {{
    {"default", PreTokenizerKind::kDefault},
    {"gpt-2", PreTokenizerKind::kGpt2},
    {"mpt", PreTokenizerKind::kGpt2},
    {"olmo", PreTokenizerKind::kGpt2},
    {"jais", PreTokenizerKind::kGpt2},
    {"llama-bpe", PreTokenizerKind::kLlama3},
    {"llama3", PreTokenizerKind::kLlama3},
    {"llama-v3", PreTokenizerKind::kLlama3},
    {"dbrx", PreTokenizerKind::kLlama3},
    {"smaug-bpe", PreTokenizerKind::kLlama3},
    {"qwen2", PreTokenizerKind::kQwen2},
    {"stablelm2", PreTokenizerKind::kQwen2},
    {"deepseek-llm", PreTokenizerKind::kDeepseekLlm},
    {"deepseek-coder", PreTokenizerKind::kDeepseekCoder},
    {"deepseek-v3", PreTokenizerKind::kDeepseekV3},
    {"gpt-4o", PreTokenizerKind::kGpt4o},
    {"falcon", PreTokenizerKind::kFalcon},
    {"starcoder", PreTokenizerKind::kStarcoder},
    {"refact", PreTokenizerKind::kStarcoder},
    {"command-r", PreTokenizerKind::kStarcoder},
    {"smollm", PreTokenizerKind::kStarcoder},
    {"codeshell", PreTokenizerKind::kStarcoder},
    {"exaone", PreTokenizerKind::kStarcoder},
    {"minerva-7b", PreTokenizerKind::kStarcoder},
}};

struct Span {
  size_t begin;
  size_t end;
};

// Apply one regex to every fragment: matches and the gaps between them both become fragments.
std::vector<Span> split_stage(const CodepointText& t, const std::vector<Span>& in, Matcher match) {
  std::vector<Span> out;
  out.reserve(in.size() * 2);
  for (const Span& frag : in) {
    size_t gap_begin = frag.begin;
    for (size_t pos = frag.begin; pos < frag.end;) {
      const size_t e = match(t, pos, frag.end);
      if (e == pos) {
        ++pos;
        continue;
      }
      if (gap_begin < pos) out.push_back({gap_begin, pos});
      out.push_back({pos, e});
      pos = gap_begin = e;
    }
    if (gap_begin < frag.end) out.push_back({gap_begin, frag.end});
  }
  return out;
}

std::vector<Matcher> stages(PreTokenizerKind kind) {
  using namespace pretok;  // NOLINT: the matcher names read as the regex sequence
  switch (kind) {
    case PreTokenizerKind::kDefault:
      return {match_default_punct, match_gpt2, match_numbers, match_three_ascii_digits};
    case PreTokenizerKind::kGpt2:
      return {match_gpt2};
    case PreTokenizerKind::kLlama3:
      return {match_llama3};
    case PreTokenizerKind::kQwen2:
      return {match_qwen2};
    case PreTokenizerKind::kDeepseekLlm:
      return {match_single_newline,   match_deepseek_llm_letters, match_deepseek_llm_punct,
              match_trailing_space,   match_cjk_deepseek_llm,     match_numbers};
    case PreTokenizerKind::kDeepseekCoder:
      return {match_single_newline, match_space_letters, match_space_punct,
              match_cjk_deepseek_llm, match_one_number};
    case PreTokenizerKind::kDeepseekV3:
      return {match_up_to_3_numbers, match_cjk_deepseek_v3, match_deepseek_v3};
    case PreTokenizerKind::kGpt4o:
      return {match_gpt4o};
    case PreTokenizerKind::kFalcon:
      return {match_falcon_punct, match_gpt2, match_three_ascii_digits};
    case PreTokenizerKind::kStarcoder:
      return {match_one_number, match_gpt2};
  }
  return {};
}

}  // namespace

Expected<PreTokenizerKind> pre_tokenizer_from_name(std::string_view name) {
  for (const auto& entry : kNames) {
    if (entry.name == name) return entry.kind;
  }
  return Error("tokenizer.ggml.pre: unknown pre-tokenizer '{}' (known: {})", name,
               known_pre_tokenizer_names());
}

std::string known_pre_tokenizer_names() {
  std::string names;
  for (const auto& entry : kNames) {
    if (!names.empty()) names += ", ";
    names += entry.name;
  }
  return names;
}

std::vector<std::string_view> pre_tokenize(PreTokenizerKind kind, std::string_view text) {
  if (text.empty()) return {};
  const CodepointText t(text);
  std::vector<Span> frags = {{0, t.size()}};
  for (Matcher m : stages(kind)) frags = split_stage(t, frags, m);
  std::vector<std::string_view> pieces;
  pieces.reserve(frags.size());
  for (const Span& f : frags) {
    pieces.push_back(text.substr(t.offs[f.begin], t.offs[f.end] - t.offs[f.begin]));
  }
  return pieces;
}

}  // namespace ktx
