// Internal to runtime/gen: synthetic tokenizers. A vocabulary is built from a small English
// corpus by real BPE training (so ordinary text tokenizes into multi-byte tokens), then, for
// the real-shape presets, extended to the model's vocabulary size with synthetic merges. Every
// merge joins two tokens that exist before it, so the merges list is consistent: each token
// above the byte level can be produced by the merges before it.
//
// Two flavours: byte-level BPE ("gpt2": GPT-2's byte-to-unicode alphabet, "Ġ" for a space,
// explicit merges) and SentencePiece BPE ("llama": "▁" for a space, <0xXX> byte-fallback
// tokens, merge priority given by scores). The vocabulary does not depend on the weight seed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/gguf/gguf.h"
#include "common/util/status.h"
#include "tools/ktx-run/gen/presets.h"

namespace ktx::gen_detail {

struct GenVocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> token_types;   // 1 normal, 2 unknown, 3 control, 6 byte
  std::vector<float> scores;          // SentencePiece only
  std::vector<std::string> merges;    // byte-level BPE only ("a b")
  int32_t bos = 0, eos = 0, pad = -1, unk = -1;
};

// GPT-2's byte-to-unicode map: the UTF-8 string standing for byte b in a byte-level token.
std::string gpt2_byte_token(uint8_t b);

// Build the vocabulary of `n_vocab` tokens for a tokenizer spec. Errors when n_vocab is too
// small for the bytes and control tokens.
Expected<GenVocab> build_vocab(const TokenizerSpec& spec, int64_t n_vocab);

// tokenizer.ggml.* and tokenizer.chat_template keys.
void write_tokenizer_keys(const TokenizerSpec& spec, const GenVocab& v, GGUFWriter& w);

}  // namespace ktx::gen_detail
