// Exactness against reference token ids: every vocabulary in $KTX_SHARED_DIR/tokenizer
// (llama.cpp test-tokenizer-0 format, ids from HF tokenizers) and the ref.tok_* cases of every
// reference model in $KTX_SHARED_DIR/models. Also checks that decode(encode(x)) gives x back.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/gguf/gguf.h"
#include "runtime/text/tokenizer.h"

namespace ktx {
namespace {

namespace fs = std::filesystem;

const fs::path kTokDir = fs::path(KTX_SHARED_DIR) / "tokenizer";
const fs::path kModelDir = fs::path(KTX_SHARED_DIR) / "models";

std::vector<std::string> files_with_suffix(const fs::path& dir, const std::string& suffix) {
  std::vector<std::string> names;
  if (!fs::is_directory(dir)) return names;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.size() > suffix.size() && name.ends_with(suffix)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// test-tokenizer-0's .inp: each string is followed by "\n__ggml_vocab_test__\n"; the newline
// before the separator belongs to the separator, not the string.
std::vector<std::string> read_inputs(const fs::path& p) {
  static const std::string kSep = "\n__ggml_vocab_test__\n";
  const std::string all = read_all(p);
  std::vector<std::string> out;
  for (size_t pos = 0; pos < all.size();) {
    const size_t at = all.find(kSep, pos);
    if (at == std::string::npos) break;
    out.push_back(all.substr(pos, at - pos));
    pos = at + kSep.size();
  }
  return out;
}

// .out: one line per string, its ids each preceded by a space.
std::vector<std::vector<int32_t>> read_expected(const fs::path& p) {
  std::vector<std::vector<int32_t>> out;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<int32_t> ids;
    std::istringstream ls(line);
    for (int32_t id; ls >> id;) ids.push_back(id);
    out.push_back(std::move(ids));
  }
  return out;
}

std::unique_ptr<Tokenizer> load(const fs::path& p) {
  auto f = GGUFFile::open(p.string());
  EXPECT_TRUE(f.has_value()) << f.status().message();
  if (!f) return nullptr;
  auto tok = Tokenizer::from_gguf(**f);
  EXPECT_TRUE(tok.has_value()) << tok.status().message();
  return tok ? std::move(*tok) : nullptr;
}

std::string ids_str(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += " " + std::to_string(id);
  return s;
}

class VocabVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabVectors, EncodesExactlyAndRoundTrips) {
  const fs::path gguf = kTokDir / GetParam();
  auto tok = load(gguf);
  ASSERT_NE(tok, nullptr);
  const auto inputs = read_inputs(gguf.string() + ".inp");
  const auto expected = read_expected(gguf.string() + ".out");
  ASSERT_FALSE(inputs.empty());
  ASSERT_EQ(inputs.size(), expected.size()) << "strings in .inp vs lines in .out";
  auto file = GGUFFile::open(gguf.string());
  ASSERT_TRUE(file.has_value());
  const bool spm = (*file)->get_string("tokenizer.ggml.model").value() == "llama";
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto ids = tok->encode(inputs[i], /*add_bos=*/false, /*parse_special=*/false);
    EXPECT_EQ(ids, expected[i]) << "string " << i << " '" << inputs[i] << "'\n got:     "
                                << ids_str(ids) << "\n expected:" << ids_str(expected[i]);
    // SentencePiece adds its space prefix to non-empty text; decode keeps it.
    const std::string want = (spm && !inputs[i].empty()) ? " " + inputs[i] : inputs[i];
    EXPECT_EQ(tok->decode(ids), want) << "round trip of string " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(SharedVocabs, VocabVectors,
                         ::testing::ValuesIn(files_with_suffix(kTokDir, ".gguf")),
                         [](const auto& info) {
                           std::string n = info.param.substr(0, info.param.size() - 5);
                           std::replace_if(n.begin(), n.end(), [](char c) { return !isalnum(c); },
                                           '_');
                           return n;
                         });

TEST(VocabVectors, RequiredVocabulariesArePresent) {
  for (const char* name : {"ggml-vocab-gpt-2.gguf", "ggml-vocab-deepseek-llm.gguf",
                           "ggml-vocab-llama-spm.gguf", "vocab-deepseek-v3.gguf",
                           "vocab-qwen2.gguf", "vocab-llama-bpe.gguf", "vocab-gpt-4o.gguf"}) {
    EXPECT_TRUE(fs::exists(kTokDir / name)) << name;
    EXPECT_TRUE(fs::exists(kTokDir / (std::string(name) + ".inp"))) << name;
  }
}

class ModelRefCases : public ::testing::TestWithParam<std::string> {};

// STEM.VARIANT.ref.gguf holds ref.tok_text.J / ref.tok_ids.J for the tokenizer of
// STEM.VARIANT.gguf (no BOS, no special-token parsing).
TEST_P(ModelRefCases, EncodesExactly) {
  const std::string ref_name = GetParam();
  const std::string model_name = ref_name.substr(0, ref_name.size() - 9) + ".gguf";
  auto tok = load(kModelDir / model_name);
  ASSERT_NE(tok, nullptr);
  auto ref = GGUFFile::open((kModelDir / ref_name).string());
  ASSERT_TRUE(ref.has_value()) << ref.status().message();
  auto n_cases = (*ref)->get_int("ref.n_tok_cases");
  ASSERT_TRUE(n_cases.has_value()) << n_cases.status().message();
  ASSERT_GT(*n_cases, 0);
  for (int64_t j = 0; j < *n_cases; ++j) {
    auto text = (*ref)->get_string(fmt::format("ref.tok_text.{}", j));
    auto want = (*ref)->get_int_array(fmt::format("ref.tok_ids.{}", j));
    ASSERT_TRUE(text.has_value()) << text.status().message();
    ASSERT_TRUE(want.has_value()) << want.status().message();
    const std::vector<int32_t> expected(want->begin(), want->end());
    const auto ids = tok->encode(*text, false, false);
    EXPECT_EQ(ids, expected) << model_name << " case " << j << " '" << *text << "'";
    EXPECT_EQ(tok->decode(ids), *text) << model_name << " case " << j;
  }
}

INSTANTIATE_TEST_SUITE_P(SharedModels, ModelRefCases,
                         ::testing::ValuesIn(files_with_suffix(kModelDir, ".ref.gguf")),
                         [](const auto& info) {
                           std::string n = info.param.substr(0, info.param.size() - 9);
                           std::replace_if(n.begin(), n.end(), [](char c) { return !isalnum(c); },
                                           '_');
                           return n;
                         });

}  // namespace
}  // namespace ktx
