// End to end: the tiny preset writes a GGUF the reader validates, with the keys and tensors a
// deepseek2 split-MLA file has; output is deterministic in the seed and not in the thread
// count; existing files are protected; real-shape presets have the published sizes (computed,
// never written).
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "common/gguf/gguf.h"
#include "tools/ktx-run/gen/generate.h"

namespace ktx {
namespace {

namespace fs = std::filesystem;

class GenerateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ktx_gen_test_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  static GenOptions tiny(const std::string& out, uint64_t seed = 7, int threads = 1) {
    GenOptions o;
    o.preset = "tiny";
    o.output = out;
    o.seed = seed;
    o.n_threads = threads;
    return o;
  }
  static std::string slurp(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  fs::path dir_;
};

TEST_F(GenerateTest, TinyWritesValidDeepSeek2File) {
  const std::string out = path("tiny.gguf");
  Status st = generate_model(tiny(out));
  ASSERT_TRUE(st.is_ok()) << st.message();
  auto f = GGUFFile::open(out);
  ASSERT_TRUE(f.has_value()) << f.status().message();
  const GGUFFile& g = **f;
  EXPECT_EQ(*g.get_string("general.architecture"), "deepseek2");
  EXPECT_EQ(*g.get_int("deepseek2.block_count"), 3);
  EXPECT_EQ(*g.get_int("deepseek2.leading_dense_block_count"), 1);
  EXPECT_EQ(*g.get_int("deepseek2.attention.head_count_kv"), 1);
  EXPECT_EQ(*g.get_int("deepseek2.attention.key_length"), 128 + 32);
  EXPECT_EQ(*g.get_int("deepseek2.attention.key_length_mla"), 64 + 32);
  EXPECT_EQ(*g.get_int("deepseek2.attention.value_length_mla"), 64);
  EXPECT_EQ(*g.get_int("deepseek2.expert_gating_func"), 2);
  EXPECT_EQ(*g.get_int("general.file_type"), 7);  // MOSTLY_Q8_0
  EXPECT_EQ(*g.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(*g.get_string("tokenizer.ggml.pre"), "gpt-2");
  EXPECT_TRUE(*g.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_NE(g.get_string("tokenizer.chat_template")->find("add_generation_prompt"),
            std::string::npos);
  auto tokens = g.get_string_array("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.has_value());
  EXPECT_EQ((*tokens)[*g.get_int("tokenizer.ggml.eos_token_id")], "<|eos|>");
  EXPECT_GT(g.get_string_array("tokenizer.ggml.merges")->size(), 200u);

  // Every planned tensor is in the file with its shape and type, and nothing else is.
  Expected<GenModelPlan> plan = gen_plan_model(tiny(out));
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(g.tensors().size(), plan->tensors.size());
  for (const GenTensor& t : plan->tensors) {
    const GGUFTensorInfo* info = g.find_tensor(t.name);
    ASSERT_NE(info, nullptr) << t.name;
    EXPECT_EQ(info->type, t.type) << t.name;
    for (size_t d = 0; d < t.ne.size(); ++d) EXPECT_EQ(info->ne[d], t.ne[d]) << t.name;
  }
  const GGUFTensorInfo* emb = g.find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->ne[1], static_cast<int64_t>(tokens->size()));
  for (const char* name : {"blk.0.ffn_gate.weight", "blk.1.ffn_gate_exps.weight",
                           "blk.1.exp_probs_b.bias", "blk.2.attn_k_b.weight",
                           "blk.2.ffn_down_shexp.weight", "output.weight"}) {
    EXPECT_NE(g.find_tensor(name), nullptr) << name;
  }
  EXPECT_EQ(g.find_tensor("blk.1.ffn_gate_inp.weight")->type, GGMLType::F32);
  // Norms are ones.
  const GGUFTensorInfo* norm = g.find_tensor("output_norm.weight");
  ASSERT_NE(norm, nullptr);
  float first = 0;
  std::memcpy(&first, norm->data, 4);
  EXPECT_EQ(first, 1.0f);
}

TEST_F(GenerateTest, SameSeedSameBytesAcrossThreadCounts) {
  ASSERT_TRUE(generate_model(tiny(path("a.gguf"), 7, 1)).is_ok());
  ASSERT_TRUE(generate_model(tiny(path("b.gguf"), 7, 4)).is_ok());
  ASSERT_TRUE(generate_model(tiny(path("c.gguf"), 8, 4)).is_ok());
  const std::string a = slurp(path("a.gguf"));
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, slurp(path("b.gguf")));
  EXPECT_NE(a, slurp(path("c.gguf")));
}

TEST_F(GenerateTest, EveryTypeWritesAReadableFile) {
  for (GGMLType type : gen_weight_types()) {
    GenOptions o = tiny(path("t.gguf"));
    o.type = type;
    o.force = true;
    Status st = generate_model(o);
    ASSERT_TRUE(st.is_ok()) << st.message();
    auto f = GGUFFile::open(o.output);
    ASSERT_TRUE(f.has_value()) << f.status().message();
    EXPECT_EQ((*f)->find_tensor("blk.1.ffn_up_exps.weight")->type, type);
  }
}

TEST_F(GenerateTest, RefusesToOverwriteWithoutForce) {
  const std::string out = path("m.gguf");
  { std::ofstream(out) << "precious"; }
  Status st = generate_model(tiny(out));
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("--force"), std::string::npos) << st.message();
  EXPECT_EQ(slurp(out), "precious");
  GenOptions o = tiny(out);
  o.force = true;
  ASSERT_TRUE(generate_model(o).is_ok());
  EXPECT_TRUE(GGUFFile::open(out).has_value());
}

TEST_F(GenerateTest, UnknownPresetAndTypeListValidOnes) {
  GenOptions o = tiny(path("x.gguf"));
  o.preset = "llama-9000";
  Status st = generate_model(o);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("deepseek-v3"), std::string::npos) << st.message();
  Expected<GGMLType> t = gen_parse_type("Q7_K");
  ASSERT_FALSE(t.has_value());
  EXPECT_NE(t.status().message().find("Q4_K"), std::string::npos) << t.status().message();
  EXPECT_EQ(*gen_parse_type("Q6_K"), GGMLType::Q6_K);
  EXPECT_FALSE(fs::exists(path("x.gguf")));
}

TEST_F(GenerateTest, MissingDirectoryIsAClearError) {
  Status st = generate_model(tiny(path("no/such/dir/m.gguf")));
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("does not exist"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace ktx
