// Decoding: token ids back to the bytes they stand for (undoing GPT-2's byte alphabet or
// SentencePiece's U+2581 spaces and <0xXX> byte tokens), and StreamDecoder, which releases text
// only in whole UTF-8 characters so a streamed reply never shows half a character.
#include <charconv>

#include "runtime/text/tokenizer.h"
#include "runtime/text/unicode.h"

namespace ktx {

namespace {

// "<0xAB>" -> 0xAB, or -1 if `text` is not a byte token.
int parse_byte_token(std::string_view text) {
  if (text.size() != 6 || !text.starts_with("<0x") || text.back() != '>') return -1;
  int value = 0;
  const auto [ptr, ec] = std::from_chars(text.data() + 3, text.data() + 5, value, 16);
  return (ec == std::errc() && ptr == text.data() + 5) ? value : -1;
}

}  // namespace

std::string Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return {};
  const std::string& text = vocab_.tokens[id];
  const TokenType type = type_of(id);
  // Special tokens are stored as the text they stand for.
  if (type == TokenType::kControl || type == TokenType::kUserDefined ||
      type == TokenType::kUnknown) {
    return text;
  }
  if (type == TokenType::kByte) {
    const int b = parse_byte_token(text);
    if (b >= 0) return std::string(1, static_cast<char>(b));
  }
  std::string out;
  out.reserve(text.size());
  if (model_ == Model::kSentencePiece) {
    static constexpr std::string_view kSpace = "\xE2\x96\x81";
    for (size_t pos = 0; pos < text.size();) {
      if (std::string_view(text).substr(pos).starts_with(kSpace)) {
        out += ' ';
        pos += kSpace.size();
      } else {
        out += text[pos++];
      }
    }
    return out;
  }
  for (size_t pos = 0; pos < text.size();) {
    uint32_t cp = 0;
    size_t len = 0;
    utf8_decode(text, pos, &cp, &len);
    const int b = unicode_to_byte(cp);
    if (b >= 0) {
      out += static_cast<char>(b);
    } else {
      out.append(text, pos, len);  // not in the byte alphabet: keep the character as is
    }
    pos += len;
  }
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) out += token_bytes(id);
  return out;
}

std::string StreamDecoder::push(int32_t id) {
  pending_ += tok_.token_bytes(id);
  const size_t keep = utf8_incomplete_tail(pending_);
  std::string out = utf8_sanitize(std::string_view(pending_).substr(0, pending_.size() - keep));
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = utf8_sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace ktx
