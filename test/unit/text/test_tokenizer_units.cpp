// Unit tests of the tokenizer's parts on hand-made inputs: pre-tokenizer splits whose regex
// outcome is known, merge priority, special-token matching rules, streaming decode of
// characters split across tokens, and the errors from_vocab / from_gguf report.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "common/gguf/gguf.h"
#include "runtime/text/pretokenizer.h"
#include "runtime/text/tokenizer.h"
#include "runtime/text/unicode.h"

namespace ktx {
namespace {

std::vector<std::string> split(const char* pre, std::string_view text) {
  auto kind = pre_tokenizer_from_name(pre);
  EXPECT_TRUE(kind.has_value()) << kind.status().message();
  std::vector<std::string> out;
  for (auto piece : pre_tokenize(*kind, text)) out.emplace_back(piece);
  return out;
}

using Pieces = std::vector<std::string>;

TEST(PreTokenizer, Gpt2KeepsLastSpaceForNextWord) {
  EXPECT_EQ(split("gpt-2", "Hello   world's 123"),
            (Pieces{"Hello", "  ", " world", "'s", " 123"}));
  // A lone tab before a word matches no alternative and stays a piece of its own.
  EXPECT_EQ(split("gpt-2", "a\tb"), (Pieces{"a", "\t", "b"}));
}

TEST(PreTokenizer, Llama3GroupsDigitsByThreeAndNewlines) {
  EXPECT_EQ(split("llama-bpe", "12345 x\n\n  y"), (Pieces{"123", "45", " x", "\n\n", " ", " y"}));
  EXPECT_EQ(split("llama-bpe", "I'LL go"), (Pieces{"I", "'LL", " go"}));
  EXPECT_EQ(split("qwen2", "2025!"), (Pieces{"2", "0", "2", "5", "!"}));
}

TEST(PreTokenizer, Gpt4oSplitsCamelCaseAndKeepsContractions) {
  EXPECT_EQ(split("gpt-4o", "HelloWorld don't"), (Pieces{"Hello", "World", " don't"}));
  EXPECT_EQ(split("gpt-4o", "ABCdef a/b\n"), (Pieces{"ABCdef", " a", "/b", "\n"}));
}

TEST(PreTokenizer, DeepseekV3SplitsCjkAndDigitsFirst) {
  // "模型" is in the CJK range, so it is isolated before the letter rule sees it.
  EXPECT_EQ(split("deepseek-v3", "ab模型1234.x"), (Pieces{"ab", "模型", "123", "4", ".x"}));
}

TEST(PreTokenizer, CoversEveryByteIncludingInvalidUtf8) {
  const std::string text = "a\xff\xfe b\xe4\xb8";  // stray bytes and a truncated character
  for (const char* pre : {"gpt-2", "llama-bpe", "qwen2", "deepseek-llm", "deepseek-v3", "gpt-4o",
                          "deepseek-coder", "falcon", "starcoder", "default"}) {
    std::string joined;
    for (const auto& p : split(pre, text)) joined += p;
    EXPECT_EQ(joined, text) << pre;
  }
}

TEST(PreTokenizer, UnknownNameListsKnownOnes) {
  auto kind = pre_tokenizer_from_name("no-such-pre");
  ASSERT_FALSE(kind.has_value());
  EXPECT_NE(kind.status().message().find("tokenizer.ggml.pre"), std::string::npos);
  EXPECT_NE(kind.status().message().find("deepseek-v3"), std::string::npos);
  EXPECT_NE(kind.status().message().find("no-such-pre"), std::string::npos);
}

TEST(Unicode, CategoriesAndByteMap) {
  EXPECT_EQ(general_category('A'), GeneralCategory::Lu);
  EXPECT_EQ(general_category(0x4E00), GeneralCategory::Lo);  // 一
  EXPECT_EQ(general_category(0x0301), GeneralCategory::Mn);  // combining acute
  EXPECT_EQ(general_category(0x0663), GeneralCategory::Nd);  // Arabic-Indic three
  EXPECT_TRUE(is_white_space(0x3000));
  EXPECT_FALSE(is_white_space(0x200B));  // zero width space is Cf, not White_Space
  for (int b = 0; b < 256; ++b) EXPECT_EQ(unicode_to_byte(byte_to_unicode(b)), b);
  EXPECT_EQ(byte_to_unicode(' '), 0x120u);  // 'Ġ'
}

// A byte-level vocabulary over {a, b, c}: merges rank "a b" before "b c".
VocabData tiny_bpe() {
  VocabData v;
  v.model = "gpt2";
  v.pre = "gpt-2";
  v.tokens = {"a", "b", "c", "ab", "bc", "abc", "<|end|>", "<tool>", "Ġ"};
  v.types = {1, 1, 1, 1, 1, 1, 3, 4, 1};
  v.merges = {"a b", "ab c", "b c"};
  v.eos_id = 6;
  return v;
}

TEST(Tokenizer, MergesFollowRank) {
  auto tok = Tokenizer::from_vocab(tiny_bpe());
  ASSERT_TRUE(tok.has_value()) << tok.status().message();
  EXPECT_EQ((*tok)->encode("abc", false, false), (std::vector<int32_t>{5}));
  EXPECT_EQ((*tok)->encode("bca", false, false), (std::vector<int32_t>{4, 0}));
}

TEST(Tokenizer, UserDefinedAlwaysControlOnlyWhenParsingSpecial) {
  auto tok = Tokenizer::from_vocab(tiny_bpe());
  ASSERT_TRUE(tok.has_value());
  const auto& t = **tok;
  EXPECT_EQ(t.encode("a<tool>b", false, false), (std::vector<int32_t>{0, 7, 1}));
  EXPECT_EQ(t.encode("a<|end|>", false, true), (std::vector<int32_t>{0, 6}));
  const auto plain = t.encode("a<|end|>", false, false);
  EXPECT_EQ(std::find(plain.begin(), plain.end(), 6), plain.end());
  EXPECT_TRUE(t.is_control(6));
  EXPECT_TRUE(t.is_end_of_generation(6));
  EXPECT_FALSE(t.is_end_of_generation(0));
  EXPECT_EQ(t.find_token("bc"), 4);
  EXPECT_EQ(t.find_token("zz"), std::nullopt);
  EXPECT_EQ(t.token_bytes(8), " ");  // Ġ decodes to a space
}

TEST(Tokenizer, RejectsBadVocabularies) {
  VocabData v = tiny_bpe();
  v.merges.push_back("nospace");
  auto bad_merge = Tokenizer::from_vocab(v);
  ASSERT_FALSE(bad_merge.has_value());
  EXPECT_NE(bad_merge.status().message().find("tokenizer.ggml.merges[3]"), std::string::npos);

  v = tiny_bpe();
  v.types.pop_back();
  auto bad_types = Tokenizer::from_vocab(v);
  ASSERT_FALSE(bad_types.has_value());
  EXPECT_NE(bad_types.status().message().find("tokenizer.ggml.token_type"), std::string::npos);

  v = tiny_bpe();
  v.bos_id = 99;
  auto bad_id = Tokenizer::from_vocab(v);
  ASSERT_FALSE(bad_id.has_value());
  EXPECT_NE(bad_id.status().message().find("tokenizer.ggml.bos_token_id"), std::string::npos);

  v = tiny_bpe();
  v.model = "wordpiece";
  EXPECT_FALSE(Tokenizer::from_vocab(v).has_value());
}

std::unique_ptr<Tokenizer> load_shared(const char* name) {
  auto f = GGUFFile::open((std::filesystem::path(KTX_SHARED_DIR) / "tokenizer" / name).string());
  EXPECT_TRUE(f.has_value()) << f.status().message();
  if (!f) return nullptr;
  auto tok = Tokenizer::from_gguf(**f);
  EXPECT_TRUE(tok.has_value()) << tok.status().message();
  return tok ? std::move(*tok) : nullptr;
}

TEST(StreamDecoder, NeverSplitsACharacter) {
  auto tok = load_shared("vocab-deepseek-v3.gguf");
  ASSERT_NE(tok, nullptr);
  const std::string text = "🦙 llama ẞ 𝔘 日本";
  const auto ids = tok->encode(text, false, false);
  // The test only means something if some character's bytes span several tokens.
  size_t partial = 0;
  for (int32_t id : ids) partial += utf8_incomplete_tail(tok->token_bytes(id)) > 0;
  ASSERT_GT(partial, 0u);
  StreamDecoder dec(*tok);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string part = dec.push(id);
    EXPECT_EQ(utf8_sanitize(part), part) << "push returned a broken character";
    streamed += part;
  }
  streamed += dec.flush();
  EXPECT_EQ(streamed, text);
}

TEST(StreamDecoder, FlushReplacesDanglingBytes) {
  auto tok = load_shared("vocab-deepseek-v3.gguf");
  ASSERT_NE(tok, nullptr);
  const auto ids = tok->encode("🦙", false, false);
  ASSERT_GT(ids.size(), 1u);
  StreamDecoder dec(*tok);
  EXPECT_EQ(dec.push(ids[0]), "");  // the first bytes of the llama cannot be shown yet
  std::string replaced;  // one U+FFFD per dangling byte
  for (size_t i = 0; i < tok->token_bytes(ids[0]).size(); ++i) replaced += "\xEF\xBF\xBD";
  EXPECT_EQ(dec.flush(), replaced);
  EXPECT_EQ(dec.flush(), "");
}

TEST(Tokenizer, BosAndControlTokensOfARealVocabulary) {
  auto tok = load_shared("vocab-deepseek-v3.gguf");
  ASSERT_NE(tok, nullptr);
  EXPECT_TRUE(tok->add_bos_default());
  const std::string bos_text = tok->token_text(tok->bos_id());
  const auto with_bos = tok->encode("Hi", true, false);
  ASSERT_FALSE(with_bos.empty());
  EXPECT_EQ(with_bos.front(), tok->bos_id());
  EXPECT_EQ(tok->encode(bos_text + "Hi", false, true), with_bos);
  EXPECT_TRUE(tok->is_end_of_generation(tok->eos_id()));
}

}  // namespace
}  // namespace ktx
