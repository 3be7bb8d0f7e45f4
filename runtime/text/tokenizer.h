// The tokenizer of a GGUF model, built from its tokenizer.ggml.* metadata: byte-level BPE
// (model "gpt2", with the pre-tokenizer named by tokenizer.ggml.pre) or SentencePiece BPE
// (model "llama", score-ordered merges with byte fallback). Encoding matches HF tokenizers /
// llama.cpp token for token; decoding returns raw bytes, and StreamDecoder turns a token stream
// into text without ever splitting a UTF-8 character.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/util/status.h"
#include "runtime/text/pretokenizer.h"

namespace ktx {

class GGUFFile;

// llama.cpp's token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  kUndefined = 0, kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5,
  kByte = 6,
};

// Everything a tokenizer is made of, as plain data: what from_gguf reads, and what tests can
// build by hand.
struct VocabData {
  std::string model;                // "gpt2" (byte-level BPE) or "llama" (SentencePiece BPE)
  std::string pre = "default";      // pre-tokenizer name (byte-level BPE only)
  std::vector<std::string> tokens;  // token texts, indexed by id
  std::vector<int32_t> types;       // TokenType per token (empty: all normal)
  std::vector<float> scores;        // SentencePiece merge scores (empty: all 0)
  std::vector<std::string> merges;  // byte-level BPE merges "left right", highest priority first
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, eot_id = -1, eom_id = -1;
  std::optional<bool> add_bos;      // unset: true for "llama", false for "gpt2"
  bool add_space_prefix = true;     // SentencePiece only
  std::string chat_template;
};

class Tokenizer {
 public:
  static Expected<std::unique_ptr<Tokenizer>> from_gguf(const GGUFFile& f);  // errors name the key
  static Expected<std::unique_ptr<Tokenizer>> from_vocab(VocabData vocab);

  // Tokenize. add_bos: prepend BOS. parse_special: match control tokens (type 3) in the text.
  // User-defined tokens (type 4) are always matched, longest first, before BPE.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;
  std::string token_bytes(int32_t id) const;  // raw bytes of one token (may be partial UTF-8)
  std::string decode(const std::vector<int32_t>& ids) const;  // concatenated token_bytes

  int32_t n_vocab() const { return static_cast<int32_t>(vocab_.tokens.size()); }
  int32_t bos_id() const { return vocab_.bos_id; }
  int32_t eos_id() const { return vocab_.eos_id; }
  bool add_bos_default() const { return add_bos_default_; }
  bool is_control(int32_t id) const { return type_of(id) == TokenType::kControl; }
  // eos, eot, eom, and control tokens named like <|im_end|>, <|eot_id|>, <｜end▁of▁sentence｜>.
  bool is_end_of_generation(int32_t id) const;
  std::optional<int32_t> find_token(std::string_view text) const;
  const std::string& chat_template() const { return vocab_.chat_template; }
  std::string token_text(int32_t id) const;  // the vocab string ("" for an invalid id)

 private:
  enum class Model { kByteLevelBpe, kSentencePiece };
  explicit Tokenizer(VocabData vocab) : vocab_(std::move(vocab)) {}
  Status init();
  TokenType type_of(int32_t id) const;

  // tokenizer_encode.cpp
  struct Fragment {
    std::string_view text;  // raw text, when token < 0
    int32_t token = -1;
  };
  std::vector<Fragment> split_special(std::string_view text, bool parse_special) const;
  void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;
  void encode_bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  void encode_spm(std::string_view text, bool space_prefix, std::vector<int32_t>& out) const;
  void emit_spm_piece(std::string_view piece, std::vector<int32_t>& out) const;

  VocabData vocab_;
  Model model_ = Model::kByteLevelBpe;
  PreTokenizerKind pre_ = PreTokenizerKind::kGpt2;
  bool add_bos_default_ = false;
  bool ignore_merges_ = false;  // Llama-3: a piece that is itself a token skips the merges
  std::unordered_map<std::string, int32_t> token_ids_;
  std::unordered_map<std::string, int32_t> merge_ranks_;  // "left right" -> rank
  // Tokens matched in raw text before BPE (user-defined always, control with parse_special),
  // grouped by first byte and longest first.
  std::vector<std::vector<int32_t>> special_by_first_byte_;
  std::vector<int32_t> byte_tokens_;  // SentencePiece <0xXX> ids (-1 if absent)
};

// Streams decoded text without ever splitting a UTF-8 character: push(id) returns only complete
// characters (and U+FFFD for bytes that can never complete one); flush() returns the rest,
// invalid bytes replaced by U+FFFD.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  std::string push(int32_t id);
  std::string flush();

 private:
  const Tokenizer& tok_;
  std::string pending_;
};

}  // namespace ktx
