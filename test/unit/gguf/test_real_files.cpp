// Opens every GGUF in the shared test material (the reference models made by the llama.cpp
// converter and llama-quantize, and the vocab-only tokenizer files) and checks facts about them
// that other parts of KTX rely on, cross-checked against each file's own metadata.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/gguf/gguf.h"

namespace ktx {
namespace {

std::vector<std::string> gguf_files_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".gguf") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::unique_ptr<GGUFFile> open_ok(const std::string& path) {
  auto f = GGUFFile::open(path);
  EXPECT_TRUE(f.has_value()) << f.status().message();
  return f.has_value() ? std::move(f).value() : nullptr;
}

TEST(GGUFRealFiles, EveryModelOpensAndTensorsTileTheDataSection) {
  auto files = gguf_files_in(std::string(KTX_SHARED_DIR) + "/models");
  ASSERT_GE(files.size(), 16u);
  for (const auto& path : files) {
    SCOPED_TRACE(path);
    auto f = open_ok(path);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->version(), 3u);
    EXPECT_EQ(f->n_splits(), 1u);
    EXPECT_EQ(f->total_size(), std::filesystem::file_size(path));
    EXPECT_EQ(f->identity_hash().size(), 64u);
    ASSERT_TRUE(f->get_string("general.architecture").has_value());
    // Every tensor is found by name, and the tensors' bytes fit in the file.
    ASSERT_FALSE(f->tensors().empty());
    uint64_t data_bytes = 0;
    for (const auto& t : f->tensors()) {
      EXPECT_EQ(f->find_tensor(t.name), &t);
      EXPECT_NE(t.data, nullptr);
      data_bytes += t.n_bytes;
    }
    EXPECT_LE(data_bytes, f->total_size());
  }
}

TEST(GGUFRealFiles, Dsv3Q4KMFacts) {
  auto f = open_ok(std::string(KTX_SHARED_DIR) + "/models/dsv3.Q4_K_M.gguf");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->tensors().size(), 52u);
  EXPECT_EQ(f->kvs().size(), 40u);
  EXPECT_EQ(*f->get_string("general.architecture"), "deepseek2");
  const GGUFTensorInfo* kb = f->find_tensor("blk.0.attn_k_b.weight");
  ASSERT_NE(kb, nullptr);
  EXPECT_EQ(kb->shape_str(), "[64, 128, 4]");
  EXPECT_EQ(kb->type, GGMLType::Q8_0);
  EXPECT_EQ(kb->n_bytes, uint64_t(64 * 128 * 4 / 32 * 34));
  EXPECT_EQ(f->find_tensor("no.such.tensor"), nullptr);
  // Metadata getters agree with the tensor table.
  auto n_embd = f->get_int("deepseek2.embedding_length");
  ASSERT_TRUE(n_embd.has_value()) << n_embd.status().message();
  EXPECT_EQ(*n_embd, f->find_tensor("token_embd.weight")->ne[0]);
  auto vocab = f->get_string_array("tokenizer.ggml.tokens");
  ASSERT_TRUE(vocab.has_value());
  EXPECT_EQ(int64_t(vocab->size()), f->find_tensor("token_embd.weight")->ne[1]);
  EXPECT_NE(f->describe().find("deepseek2"), std::string::npos);
  // Type errors name the key and both types.
  auto bad = f->get_int("general.architecture");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.status().message().find("general.architecture"), std::string::npos);
  EXPECT_NE(bad.status().message().find("STRING"), std::string::npos);
}

TEST(GGUFRealFiles, TokenizerArraysHaveConsistentLengths) {
  auto files = gguf_files_in(std::string(KTX_SHARED_DIR) + "/tokenizer");
  ASSERT_GE(files.size(), 12u);
  for (const auto& path : files) {
    SCOPED_TRACE(path);
    auto f = open_ok(path);
    ASSERT_NE(f, nullptr);
    EXPECT_TRUE(f->tensors().empty());
    auto tokens = f->get_string_array("tokenizer.ggml.tokens");
    ASSERT_TRUE(tokens.has_value()) << tokens.status().message();
    EXPECT_GT(tokens->size(), 1000u);
    auto types = f->get_int_array("tokenizer.ggml.token_type");
    ASSERT_TRUE(types.has_value()) << types.status().message();
    EXPECT_EQ(types->size(), tokens->size());
    if (f->has("tokenizer.ggml.scores")) {
      auto scores = f->get_float_array("tokenizer.ggml.scores");
      ASSERT_TRUE(scores.has_value());
      EXPECT_EQ(scores->size(), tokens->size());
    }
    auto bos = f->get_int_or("tokenizer.ggml.bos_token_id", -1);
    ASSERT_TRUE(bos.has_value());
    EXPECT_LT(*bos, int64_t(tokens->size()));
  }
}

TEST(GGUFRealFiles, DeepseekLlmVocabSize) {
  auto f = open_ok(std::string(KTX_SHARED_DIR) + "/tokenizer/ggml-vocab-deepseek-llm.gguf");
  ASSERT_NE(f, nullptr);
  auto tokens = f->get_string_array("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.has_value());
  EXPECT_GE(tokens->size(), 100000u);
  auto merges = f->get_string_array("tokenizer.ggml.merges");
  ASSERT_TRUE(merges.has_value());
  EXPECT_GT(merges->size(), 10000u);
  EXPECT_EQ(*f->get_string("tokenizer.ggml.model"), "gpt2");
}

}  // namespace
}  // namespace ktx
