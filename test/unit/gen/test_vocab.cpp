// Synthetic tokenizers: byte tokens in GPT-2's alphabet, unique tokens, merges that only join
// tokens existing before them, English pieces learned from the corpus, SentencePiece layout.
#include <gtest/gtest.h>

#include <set>
#include <unordered_map>

#include "tools/ktx-run/gen/presets.h"
#include "tools/ktx-run/gen/vocab_gen.h"

namespace ktx::gen_detail {
namespace {

TEST(Vocab, Gpt2ByteAlphabet) {
  EXPECT_EQ(gpt2_byte_token(' '), "\xc4\xa0");   // Ġ (U+0120)
  EXPECT_EQ(gpt2_byte_token('\n'), "\xc4\x8a");  // Ċ (U+010A)
  EXPECT_EQ(gpt2_byte_token('A'), "A");
  EXPECT_EQ(gpt2_byte_token(0), "\xc4\x80");     // Ā (U+0100)
  std::set<std::string> all;
  for (int b = 0; b < 256; ++b) all.insert(gpt2_byte_token(static_cast<uint8_t>(b)));
  EXPECT_EQ(all.size(), 256u);
}

// Every merge "a b" joins two tokens with lower ids than a+b, and a+b is in the vocabulary.
void expect_consistent(const GenVocab& v) {
  std::unordered_map<std::string, size_t> id;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    ASSERT_TRUE(id.emplace(v.tokens[i], i).second) << "duplicate token '" << v.tokens[i] << "'";
  }
  for (const std::string& m : v.merges) {
    const size_t sp = m.find(' ');
    ASSERT_NE(sp, std::string::npos) << m;
    const std::string a = m.substr(0, sp), b = m.substr(sp + 1);
    ASSERT_TRUE(id.count(a) && id.count(b) && id.count(a + b)) << "merge '" << m << "'";
    EXPECT_LT(id[a], id[a + b]) << m;
    EXPECT_LT(id[b], id[a + b]) << m;
  }
}

TEST(Vocab, TinyIsConsistentAndLearnsEnglish) {
  const PresetSpec* p = find_preset("tiny");
  ASSERT_NE(p, nullptr);
  Expected<GenVocab> v = build_vocab(p->tok, p->n_vocab);
  ASSERT_TRUE(v.has_value()) << v.status().message();
  ASSERT_EQ(static_cast<int64_t>(v->tokens.size()), p->n_vocab);
  ASSERT_EQ(v->token_types.size(), v->tokens.size());
  expect_consistent(*v);
  EXPECT_EQ(v->tokens[0], "<|bos|>");
  EXPECT_EQ(v->token_types[0], 3);
  EXPECT_EQ(v->tokens[v->eos], "<|eos|>");
  EXPECT_EQ(v->tokens[5], "!");  // byte tokens follow the controls, printable bytes first
  std::set<std::string> toks(v->tokens.begin(), v->tokens.end());
  EXPECT_TRUE(toks.count("\xc4\xa0the")) << "' the' was not learned from the corpus";
  EXPECT_TRUE(toks.count("<|assistant|>"));
  EXPECT_GE(v->merges.size(), 200u);
}

TEST(Vocab, QwenSizedVocabularyPutsControlsLast) {
  const PresetSpec* p = find_preset("qwen3-30b-a3b");
  ASSERT_NE(p, nullptr);
  Expected<GenVocab> v = build_vocab(p->tok, p->n_vocab);
  ASSERT_TRUE(v.has_value()) << v.status().message();
  ASSERT_EQ(static_cast<int64_t>(v->tokens.size()), 151936);
  expect_consistent(*v);
  EXPECT_EQ(v->tokens[v->eos], "<|im_end|>");
  EXPECT_EQ(v->eos, 151935);
  EXPECT_EQ(v->token_types[v->bos], 3);
}

TEST(Vocab, SentencePieceLayout) {
  const PresetSpec* p = find_preset("mixtral-8x7b");
  ASSERT_NE(p, nullptr);
  Expected<GenVocab> v = build_vocab(p->tok, p->n_vocab);
  ASSERT_TRUE(v.has_value()) << v.status().message();
  ASSERT_EQ(v->tokens.size(), 32000u);
  ASSERT_EQ(v->scores.size(), 32000u);
  EXPECT_TRUE(v->merges.empty());
  expect_consistent(*v);
  EXPECT_EQ(v->tokens[0], "<unk>");
  EXPECT_EQ(v->token_types[0], 2);
  EXPECT_EQ(v->tokens[v->bos], "<s>");
  EXPECT_EQ(v->tokens[3], "<0x00>");
  EXPECT_EQ(v->token_types[3], 6);
  // Merged pieces come by decreasing score (SentencePiece merge priority).
  for (size_t i = 260; i < v->scores.size(); ++i) EXPECT_LT(v->scores[i], v->scores[i - 1]);
  std::set<std::string> toks(v->tokens.begin(), v->tokens.end());
  EXPECT_TRUE(toks.count("\xe2\x96\x81the"));
}

TEST(Vocab, TooSmallIsAnError) {
  TokenizerSpec spec;
  spec.controls = {"<a>", "<b>"};
  Expected<GenVocab> v = build_vocab(spec, 100);
  ASSERT_FALSE(v.has_value());
  EXPECT_NE(v.status().message().find("too small"), std::string::npos);
}

}  // namespace
}  // namespace ktx::gen_detail
