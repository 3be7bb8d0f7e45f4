// Encoding: special-token partition, then byte-level BPE (rank-ordered merges over the GPT-2
// byte alphabet, one pre-tokenizer piece at a time) or SentencePiece BPE (score-ordered merges
// over characters, byte fallback). Both merge loops use a priority queue over adjacent symbol
// pairs with lazy invalidation, so long pieces cost O(n log n), not O(n^2).
#include <queue>

#include "runtime/text/tokenizer.h"
#include "runtime/text/unicode.h"

namespace ktx {

namespace {

// A symbol is a byte range of the word being merged; merging absorbs the right neighbour, so a
// symbol's start never moves and (start, len) identifies its text.
struct Symbol {
  size_t start = 0;
  size_t len = 0;  // 0 once merged into its left neighbour
  int prev = -1;
  int next = -1;
};

// A candidate merge of symbols `left` and `left.next`. `priority` is smaller-is-better (BPE
// rank, or minus the SentencePiece score); ties go to the leftmost pair, as in HF tokenizers.
struct Candidate {
  double priority;
  int left;
  int right;
  size_t left_len;   // lengths when queued: a changed length means the entry is stale
  size_t right_len;
  bool operator>(const Candidate& o) const {
    return priority != o.priority ? priority > o.priority : left > o.left;
  }
};

using CandidateQueue = std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>>;

// Split `word` into one symbol per UTF-8 character (a stray byte is a symbol of its own).
std::vector<Symbol> char_symbols(std::string_view word) {
  std::vector<Symbol> syms;
  for (size_t pos = 0; pos < word.size();) {
    const size_t len = std::min<size_t>(utf8_seq_len(static_cast<uint8_t>(word[pos])),
                                        word.size() - pos);
    const int idx = static_cast<int>(syms.size());
    syms.push_back({pos, len, idx - 1, -1});
    if (idx > 0) syms[idx - 1].next = idx;
    pos += len;
  }
  return syms;
}

// Run the merge loop; `priority_of(text)` gives a pair's priority or nullopt if it cannot merge.
template <typename PriorityFn>
void merge_symbols(std::string_view word, std::vector<Symbol>& syms, PriorityFn priority_of) {
  CandidateQueue queue;
  auto try_push = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const auto text = word.substr(syms[l].start, syms[l].len + syms[r].len);
    if (auto p = priority_of(syms[l], syms[r], text)) {
      queue.push({*p, l, r, syms[l].len, syms[r].len});
    }
  };
  for (int i = 0; i + 1 < static_cast<int>(syms.size()); ++i) try_push(i, i + 1);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& l = syms[c.left];
    Symbol& r = syms[c.right];
    if (l.len != c.left_len || r.len != c.right_len || l.next != c.right || r.len == 0) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.left;
    try_push(l.prev, c.left);
    try_push(c.left, l.next);
  }
}

}  // namespace

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos && vocab_.bos_id >= 0) out.push_back(vocab_.bos_id);
  // SentencePiece adds its space prefix to text at the start or right after a special token.
  bool after_special = true;
  for (const Fragment& frag : split_special(text, parse_special)) {
    if (frag.token >= 0) {
      out.push_back(frag.token);
      after_special = true;
      continue;
    }
    if (model_ == Model::kSentencePiece) {
      encode_spm(frag.text, vocab_.add_space_prefix && after_special, out);
    } else {
      encode_bpe(frag.text, out);
    }
    after_special = false;
  }
  return out;
}

std::vector<Tokenizer::Fragment> Tokenizer::split_special(std::string_view text,
                                                          bool parse_special) const {
  std::vector<Fragment> frags;
  size_t raw_begin = 0;
  for (size_t pos = 0; pos < text.size();) {
    int32_t found = -1;
    for (int32_t id : special_by_first_byte_[static_cast<uint8_t>(text[pos])]) {
      if (type_of(id) != TokenType::kUserDefined && !parse_special) continue;
      if (text.substr(pos).starts_with(vocab_.tokens[id])) {
        found = id;  // buckets are sorted longest first: leftmost-longest match
        break;
      }
    }
    if (found < 0) {
      ++pos;
      continue;
    }
    if (raw_begin < pos) frags.push_back({text.substr(raw_begin, pos - raw_begin), -1});
    frags.push_back({{}, found});
    pos += vocab_.tokens[found].size();
    raw_begin = pos;
  }
  if (raw_begin < text.size()) frags.push_back({text.substr(raw_begin), -1});
  return frags;
}

void Tokenizer::encode_bpe(std::string_view text, std::vector<int32_t>& out) const {
  for (std::string_view piece : pre_tokenize(pre_, text)) encode_bpe_word(piece, out);
}

void Tokenizer::encode_bpe_word(std::string_view piece, std::vector<int32_t>& out) const {
  // Map bytes to GPT-2's printable alphabet: vocabulary and merges are written in it.
  std::string word;
  word.reserve(piece.size() * 2);
  for (char ch : piece) utf8_append(word, byte_to_unicode(static_cast<uint8_t>(ch)));
  if (ignore_merges_) {
    if (auto id = find_token(word)) {
      out.push_back(*id);
      return;
    }
  }
  std::vector<Symbol> syms = char_symbols(word);
  std::string key;
  merge_symbols(word, syms, [&](const Symbol& l, const Symbol& r, std::string_view)
                                -> std::optional<double> {
    key.assign(word.substr(l.start, l.len)).append(" ").append(word.substr(r.start, r.len));
    auto it = merge_ranks_.find(key);
    if (it == merge_ranks_.end()) return std::nullopt;
    return static_cast<double>(it->second);
  });
  for (int i = 0; i >= 0 && i < static_cast<int>(syms.size()); i = syms[i].next) {
    const auto text = std::string_view(word).substr(syms[i].start, syms[i].len);
    if (auto id = find_token(text)) {
      out.push_back(*id);
      continue;
    }
    // Not a token (a vocabulary without every byte): fall back to single characters.
    for (const Symbol& ch : char_symbols(text)) {
      auto id = find_token(text.substr(ch.start, ch.len));
      if (id) {
        out.push_back(*id);
      } else if (vocab_.unk_id >= 0) {
        out.push_back(vocab_.unk_id);
      }
    }
  }
}

void Tokenizer::encode_spm(std::string_view text, bool space_prefix,
                           std::vector<int32_t>& out) const {
  // SentencePiece writes spaces as U+2581 LOWER ONE EIGHTH BLOCK.
  static constexpr std::string_view kSpace = "\xE2\x96\x81";
  std::string word;
  word.reserve(text.size() + 8);
  if (space_prefix) word += kSpace;
  for (char ch : text) {
    if (ch == ' ') {
      word += kSpace;
    } else {
      word += ch;
    }
  }
  std::vector<Symbol> syms = char_symbols(word);
  merge_symbols(word, syms, [&](const Symbol&, const Symbol&, std::string_view pair)
                                -> std::optional<double> {
    auto id = find_token(pair);
    if (!id) return std::nullopt;
    return -static_cast<double>(vocab_.scores[*id]);  // highest score merges first
  });
  for (int i = 0; i >= 0 && i < static_cast<int>(syms.size()); i = syms[i].next) {
    emit_spm_piece(std::string_view(word).substr(syms[i].start, syms[i].len), out);
  }
}

void Tokenizer::emit_spm_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (auto id = find_token(piece)) {
    out.push_back(*id);
    return;
  }
  // Byte fallback: <0xXX> per byte, the unknown token where the vocabulary has none.
  for (char ch : piece) {
    const int32_t id = byte_tokens_[static_cast<uint8_t>(ch)];
    if (id >= 0) {
      out.push_back(id);
    } else if (vocab_.unk_id >= 0) {
      out.push_back(vocab_.unk_id);
    }
  }
}

}  // namespace ktx
