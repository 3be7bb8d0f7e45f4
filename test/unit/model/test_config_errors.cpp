// ModelConfig::from_gguf on broken files: a small valid qwen3moe file is written with
// GGUFWriter, then each case changes one thing (a key, a tensor, a shape, the architecture,
// a weight type) and the error must name what is wrong.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/gguf/gguf.h"
#include "common/model/config.h"

namespace ktx {
namespace {

struct TensorSpec {
  GGMLType type = GGMLType::F32;
  std::vector<int64_t> ne;
};

// A tiny but complete qwen3moe: 1 layer, 2/1 heads of 16, 4 experts (top 2) of 256.
struct FileSpec {
  std::string arch = "qwen3moe";
  std::map<std::string, int64_t> ints = {
      {"block_count", 1}, {"context_length", 128}, {"embedding_length", 32},
      {"attention.head_count", 2}, {"attention.head_count_kv", 1}, {"attention.key_length", 16},
      {"attention.value_length", 16}, {"expert_count", 4}, {"expert_used_count", 2},
      {"expert_feed_forward_length", 256}};
  std::map<std::string, TensorSpec> tensors = {
      {"token_embd.weight", {GGMLType::F32, {32, 8}}},
      {"output_norm.weight", {GGMLType::F32, {32}}},
      {"output.weight", {GGMLType::F32, {32, 8}}},
      {"blk.0.attn_norm.weight", {GGMLType::F32, {32}}},
      {"blk.0.ffn_norm.weight", {GGMLType::F32, {32}}},
      {"blk.0.attn_q.weight", {GGMLType::F32, {32, 32}}},
      {"blk.0.attn_k.weight", {GGMLType::F32, {32, 16}}},
      {"blk.0.attn_v.weight", {GGMLType::F32, {32, 16}}},
      {"blk.0.attn_output.weight", {GGMLType::F32, {32, 32}}},
      {"blk.0.attn_q_norm.weight", {GGMLType::F32, {16}}},
      {"blk.0.attn_k_norm.weight", {GGMLType::F32, {16}}},
      {"blk.0.ffn_gate_inp.weight", {GGMLType::F32, {32, 4}}},
      {"blk.0.ffn_gate_exps.weight", {GGMLType::F32, {32, 256, 4}}},
      {"blk.0.ffn_up_exps.weight", {GGMLType::F32, {32, 256, 4}}},
      {"blk.0.ffn_down_exps.weight", {GGMLType::F32, {256, 32, 4}}},
  };
};

Expected<ModelConfig> decide(const FileSpec& spec, const std::string& tag) {
  GGUFWriter w;
  w.set_str("general.architecture", spec.arch);
  for (const auto& [k, v] : spec.ints) w.set_u32(spec.arch + "." + k, static_cast<uint32_t>(v));
  w.set_f32(spec.arch + ".attention.layer_norm_rms_epsilon", 1e-6f);
  for (const auto& [name, t] : spec.tensors) {
    int64_t n = 1;
    for (int64_t d : t.ne) n *= d;
    auto bytes = ggml_row_bytes(t.type, t.ne[0]);
    if (!bytes) return bytes.status();
    std::vector<uint8_t> data(*bytes * (n / t.ne[0]), 0);
    KTX_RETURN_IF_ERROR(w.add_tensor(name, t.type, t.ne, data.data(), data.size()));
  }
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("ktx_config_" + tag + ".gguf")).string();
  KTX_RETURN_IF_ERROR(w.write(path));
  auto f = GGUFFile::open(path);
  std::filesystem::remove(path);
  if (!f) return f.status();
  return ModelConfig::from_gguf(**f);
}

void expect_error(const Expected<ModelConfig>& r, const std::vector<std::string>& parts) {
  ASSERT_FALSE(r.has_value()) << "expected an error";
  for (const std::string& p : parts)
    EXPECT_NE(r.status().message().find(p), std::string::npos)
        << "message lacks '" << p << "': " << r.status().message();
}

TEST(ConfigErrors, ValidBaseFileIsAccepted) {
  auto r = decide(FileSpec{}, "valid");
  ASSERT_TRUE(r.has_value()) << r.status().message();
  EXPECT_EQ(r->n_expert_used, 2);
  EXPECT_EQ(r->n_vocab, 8);
  EXPECT_TRUE(r->qk_norm);
}

TEST(ConfigErrors, MissingKeyIsNamed) {
  FileSpec s;
  s.ints.erase("block_count");
  expect_error(decide(s, "nokey"), {"qwen3moe.block_count"});
}

TEST(ConfigErrors, MissingTensorIsNamed) {
  FileSpec s;
  s.tensors.erase("blk.0.ffn_up_exps.weight");
  expect_error(decide(s, "notensor"), {"blk.0.ffn_up_exps.weight", "missing"});
}

TEST(ConfigErrors, WrongShapeNamesTensorExpectedAndFound) {
  FileSpec s;
  s.tensors["blk.0.attn_k.weight"].ne = {32, 24};
  expect_error(decide(s, "shape"), {"blk.0.attn_k.weight", "[32, 16]", "[32, 24]"});
}

TEST(ConfigErrors, UnsupportedArchitectureListsSupported) {
  FileSpec s;
  s.arch = "phi3";
  expect_error(decide(s, "arch"), {"unsupported architecture 'phi3'", "general.architecture",
                                   "deepseek2", "qwen3moe", "qwen2moe", "llama"});
}

TEST(ConfigErrors, UnsupportedWeightTypeNamesTensorAndType) {
  FileSpec s;
  s.tensors["blk.0.ffn_down_exps.weight"].type = GGMLType::IQ4_XS;
  expect_error(decide(s, "type"), {"blk.0.ffn_down_exps.weight", "IQ4_XS"});
}

TEST(ConfigErrors, InconsistentExpertCountsAreRejected) {
  FileSpec s;
  s.ints["expert_used_count"] = 5;
  expect_error(decide(s, "used"), {"expert_used_count"});
  FileSpec f;
  f.ints["expert_feed_forward_length"] = 128;  // tensors say 256
  expect_error(decide(f, "ff"), {"expert_feed_forward_length", "blk.0.ffn_gate_exps.weight"});
}

}  // namespace
}  // namespace ktx
