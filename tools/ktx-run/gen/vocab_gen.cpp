// Synthetic tokenizer vocabularies (see vocab_gen.h): BPE training on a small embedded English
// corpus, then deterministic synthetic merges up to the requested size.
#include "tools/ktx-run/gen/vocab_gen.h"

#include <fmt/format.h>

#include <map>
#include <unordered_set>
#include <utility>

#include "tools/ktx-run/gen/fill.h"

namespace ktx::gen_detail {
namespace {

// Plain English written for this generator: common words and word pieces, enough for a few
// hundred merges that occur at least twice.
const char* kCorpus =
    "The quick brown fox jumps over the lazy dog. Hello there, how are you today? I am fine, "
    "thank you for asking. What would you like to talk about? Let us talk about the weather, "
    "the news, and the things that matter to people in their daily lives. The weather is nice "
    "and warm this morning, and the sun is shining over the city. People are walking in the "
    "park, children are playing, and the birds are singing in the trees. This is a small "
    "model that runs on your computer. It was generated with random weights, so the answers "
    "it gives will not make much sense, but the machinery that runs it is the same machinery "
    "that runs the largest models. Every token passes through the attention layers and the "
    "experts, and the router chooses which experts should work on each token. The experts "
    "are small networks, and only a few of them are used for every token, which is why these "
    "models are fast even when they are very large. Thinking about computers, memory and "
    "speed is interesting: the processor reads the weights from memory, multiplies them with "
    "the activations, and writes the results back. Reading is often the slowest part, so we "
    "keep the most important weights close to the processor. Tell me a story about a king "
    "and a queen who lived in a castle near the sea. Once upon a time there was a kingdom "
    "where everyone was happy, until one morning the king found that his crown was missing. "
    "He asked the queen, the servants and the guards, but nobody knew where it was. Then a "
    "little girl from the village came to the castle and said that she had seen a bird "
    "carrying something shiny into the forest. The king thanked her and went into the forest "
    "with his guards, and there, in the nest of a large bird, they found the crown. Please "
    "write a short answer. Can you explain how this works? Yes, of course, I will try to "
    "explain it as simply as possible. First, the text is split into tokens. Second, each "
    "token becomes a vector. Third, the model computes the next token, again and again.";

constexpr size_t kMaxHeadBytes = 10, kMaxTailBytes = 6;
constexpr uint64_t kVocabSeed = 0x7A3C5EEDull;  // fixed: the vocabulary ignores --seed

const char* kGpt2Space = "\xc4\xa0";   // "Ġ", byte 0x20 in GPT-2's alphabet
const char* kSpmSpace = "\xe2\x96\x81";  // "▁" (U+2581)

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Words of the corpus as symbol sequences: an optional space symbol followed by letters.
std::map<std::vector<std::string>, int64_t> corpus_words(const std::string& space) {
  std::map<std::vector<std::string>, int64_t> words;
  const std::string text = kCorpus;
  for (size_t i = 0; i < text.size();) {
    std::vector<std::string> w;
    size_t j = i;
    if (text[j] == ' ' && j + 1 < text.size() && is_letter(text[j + 1])) {
      w.push_back(space);
      ++j;
    }
    while (j < text.size() && is_letter(text[j])) w.emplace_back(1, text[j++]);
    if (w.size() >= 2) ++words[w];
    i = j > i ? j : i + 1;
  }
  return words;
}

// Learns merges in order; `emit(a, b)` is called for each. Stops at max_merges or when no
// pair occurs twice. Ties go to the smallest pair, so the result is deterministic.
template <typename Emit>
void train_bpe(const std::string& space, int64_t max_merges, Emit emit) {
  auto words = corpus_words(space);
  for (int64_t m = 0; m < max_merges; ++m) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (const auto& [w, n] : words) {
      for (size_t k = 0; k + 1 < w.size(); ++k) pairs[{w[k], w[k + 1]}] += n;
    }
    const std::pair<std::string, std::string>* best = nullptr;
    int64_t best_n = 1;
    for (const auto& [p, n] : pairs) {
      if (n > best_n) { best = &p; best_n = n; }
    }
    if (!best) return;
    const auto [a, b] = *best;
    emit(a, b);
    std::map<std::vector<std::string>, int64_t> next;
    for (const auto& [w, n] : words) {
      std::vector<std::string> out;
      for (size_t k = 0; k < w.size(); ++k) {
        if (k + 1 < w.size() && w[k] == a && w[k + 1] == b) {
          out.push_back(a + b);
          ++k;
        } else {
          out.push_back(w[k]);
        }
      }
      next[out] += n;
    }
    words = std::move(next);
  }
}

// Produces `n_merged` new tokens (each the concatenation of two earlier ones), corpus merges
// first. `merges` receives "a b" for every merge, `pieces` the new tokens in order.
void make_merged_tokens(const std::string& space, int64_t n_merged,
                        std::vector<std::string>& pieces, std::vector<std::string>& merges) {
  std::unordered_set<std::string> known;
  std::vector<std::string> heads = {space}, tails;
  for (char c = 'a'; c <= 'z'; ++c) {
    heads.emplace_back(1, c);
    tails.emplace_back(1, c);
    known.insert(std::string(1, c));
  }
  known.insert(space);
  auto add = [&](const std::string& a, const std::string& b) {
    const std::string t = a + b;
    if (static_cast<int64_t>(pieces.size()) >= n_merged || known.count(t)) return false;
    known.insert(t);
    merges.push_back(a + " " + b);
    pieces.push_back(t);
    // Only short pieces extend further, so synthetic tokens stay word-sized (<= 16 bytes)
    // without rejection sampling.
    if (t.size() <= kMaxHeadBytes) heads.push_back(t);
    if (t.size() <= kMaxTailBytes && t.find(space) == std::string::npos) tails.push_back(t);
    return true;
  };
  train_bpe(space, n_merged, add);
  Rng rng(kVocabSeed);
  while (static_cast<int64_t>(pieces.size()) < n_merged) {
    const std::string a = heads[rng.next() % heads.size()];
    const std::string b = tails[rng.next() % tails.size()];
    add(a, b);
  }
}

Expected<GenVocab> build_gpt2(const TokenizerSpec& spec, int64_t n_vocab) {
  const int64_t n_ctrl = static_cast<int64_t>(spec.controls.size());
  const int64_t n_merged = n_vocab - 256 - n_ctrl;
  GenVocab v;
  std::vector<std::string> pieces, merges;
  make_merged_tokens(kGpt2Space, n_merged, pieces, merges);
  auto add_controls = [&] {
    for (const std::string& c : spec.controls) {
      v.tokens.push_back(c);
      v.token_types.push_back(3);
    }
  };
  const int32_t ctrl_base = spec.controls_first ? 0 : static_cast<int32_t>(n_vocab - n_ctrl);
  if (spec.controls_first) add_controls();
  // Byte tokens in GPT-2's order: the printable bytes first, then the remapped ones.
  for (int pass = 0; pass < 2; ++pass) {
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      if (printable == (pass == 0)) {
        v.tokens.push_back(gpt2_byte_token(static_cast<uint8_t>(b)));
        v.token_types.push_back(1);
      }
    }
  }
  for (std::string& p : pieces) {
    v.tokens.push_back(std::move(p));
    v.token_types.push_back(1);
  }
  if (!spec.controls_first) add_controls();
  v.merges = std::move(merges);
  v.bos = ctrl_base + spec.bos;
  v.eos = ctrl_base + spec.eos;
  v.pad = spec.pad >= 0 ? ctrl_base + spec.pad : -1;
  return v;
}

// SentencePiece layout as in Llama/Mistral files: controls, <0xXX> byte tokens, merged pieces
// by decreasing score, then the single characters.
Expected<GenVocab> build_spm(const TokenizerSpec& spec, int64_t n_vocab) {
  std::vector<std::string> chars = {kSpmSpace};
  for (int c = 33; c < 127; ++c) chars.emplace_back(1, static_cast<char>(c));
  const int64_t n_ctrl = static_cast<int64_t>(spec.controls.size());
  const int64_t n_merged = n_vocab - n_ctrl - 256 - static_cast<int64_t>(chars.size());
  if (n_merged < 0) {
    return Error("gen: vocabulary of {} tokens is too small for {} control tokens, 256 byte "
                 "tokens and {} characters", n_vocab, n_ctrl, chars.size());
  }
  GenVocab v;
  std::vector<std::string> pieces, merges;
  make_merged_tokens(kSpmSpace, n_merged, pieces, merges);
  for (size_t i = 0; i < spec.controls.size(); ++i) {
    v.tokens.push_back(spec.controls[i]);
    v.token_types.push_back(spec.controls[i] == "<unk>" ? 2 : 3);
    v.scores.push_back(0.0f);
    if (spec.controls[i] == "<unk>") v.unk = static_cast<int32_t>(i);
  }
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(fmt::format("<0x{:02X}>", b));
    v.token_types.push_back(6);
    v.scores.push_back(0.0f);
  }
  float score = 0.0f;
  for (std::string& p : pieces) {
    v.tokens.push_back(std::move(p));
    v.token_types.push_back(1);
    v.scores.push_back(score -= 1.0f);
  }
  for (std::string& c : chars) {
    v.tokens.push_back(std::move(c));
    v.token_types.push_back(1);
    v.scores.push_back(score -= 1.0f);
  }
  v.bos = spec.bos;
  v.eos = spec.eos;
  v.pad = spec.pad;
  return v;
}

}  // namespace

std::string gpt2_byte_token(uint8_t b) {
  const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
  if (printable) return utf8(b);
  // Non-printable bytes map to 256, 257, ... in byte order.
  uint32_t n = 0;
  for (int x = 0; x < b; ++x) {
    const bool p = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174;
    if (!p) ++n;
  }
  return utf8(256 + n);
}

Expected<GenVocab> build_vocab(const TokenizerSpec& spec, int64_t n_vocab) {
  if (spec.kind == TokenizerKind::SentencePiece) return build_spm(spec, n_vocab);
  const int64_t n_ctrl = static_cast<int64_t>(spec.controls.size());
  if (n_vocab < 256 + n_ctrl) {
    return Error("gen: vocabulary of {} tokens is too small for 256 byte tokens and {} control "
                 "tokens", n_vocab, n_ctrl);
  }
  return build_gpt2(spec, n_vocab);
}

void write_tokenizer_keys(const TokenizerSpec& spec, const GenVocab& v, GGUFWriter& w) {
  const bool spm = spec.kind == TokenizerKind::SentencePiece;
  w.set_str("tokenizer.ggml.model", spm ? "llama" : "gpt2");
  w.set_str("tokenizer.ggml.pre", spec.pre);
  w.set_str_array("tokenizer.ggml.tokens", v.tokens);
  if (spm) w.set_f32_array("tokenizer.ggml.scores", v.scores);
  w.set_i32_array("tokenizer.ggml.token_type", v.token_types);
  if (!spm) w.set_str_array("tokenizer.ggml.merges", v.merges);
  w.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(v.bos));
  w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(v.eos));
  if (v.unk >= 0) w.set_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(v.unk));
  if (v.pad >= 0) w.set_u32("tokenizer.ggml.padding_token_id", static_cast<uint32_t>(v.pad));
  w.set_bool("tokenizer.ggml.add_bos_token", spec.add_bos);
  w.set_bool("tokenizer.ggml.add_eos_token", false);
  w.set_str("tokenizer.chat_template", spec.chat_template);
}

}  // namespace ktx::gen_detail
