// ModelConfig: what from_gguf decides for each shipped model (../shared/models), JSON round
// trips, and the errors for broken files, built in memory with GGUFWriter so each case
// differs from a valid file in exactly one way.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>

#include "common/gguf/gguf.h"
#include "common/model/config.h"

namespace ktx {
namespace {

Expected<ModelConfig> config_of(const std::string& stem) {
  auto f = GGUFFile::open(std::string(KTX_SHARED_DIR) + "/models/" + stem + ".gguf");
  if (!f) return f.status();
  return ModelConfig::from_gguf(**f);
}

TEST(ConfigShipped, Qwen3Moe) {
  for (const char* stem : {"qwen3moe.Q8_0", "qwen3moe.Q4_K_M"}) {
    auto c = config_of(stem);
    ASSERT_TRUE(c.has_value()) << stem << ": " << c.status().message();
    EXPECT_EQ(c->arch, ModelArch::Qwen3Moe);
    EXPECT_EQ(c->attn, AttnKind::GQA);
    EXPECT_EQ(c->n_vocab, 400);
    EXPECT_EQ(c->n_embd, 256);
    EXPECT_EQ(c->n_head, 4);
    EXPECT_EQ(c->n_head_kv, 2);
    EXPECT_EQ(c->head_dim_k, 64);
    EXPECT_EQ(c->n_rot, 64);  // no rope.dimension_count key: the whole head
    EXPECT_TRUE(c->qk_norm);
    EXPECT_FALSE(c->qkv_bias);
    EXPECT_EQ(c->rope_style, RopeStyle::Neox);
    EXPECT_FLOAT_EQ(c->rope_freq_base, 1e6f);
    EXPECT_EQ(c->n_expert, 16);
    EXPECT_EQ(c->n_expert_used, 4);
    EXPECT_EQ(c->n_ff_exp, 256);
    EXPECT_EQ(c->n_ff_shexp, 0);
    EXPECT_EQ(c->gating, GatingFunc::Softmax);
    EXPECT_TRUE(c->expert_weights_norm);  // Qwen3-MoE renormalizes; the file has no key
    EXPECT_FALSE(c->softmax_after_topk);
    EXPECT_FLOAT_EQ(c->attn_scale, 1.0f / 8.0f);
  }
}

TEST(ConfigShipped, Mixtral) {
  for (const char* stem : {"mixtral.Q8_0", "mixtral.Q4_K_M"}) {
    auto c = config_of(stem);
    ASSERT_TRUE(c.has_value()) << stem << ": " << c.status().message();
    EXPECT_EQ(c->arch, ModelArch::Llama);
    EXPECT_EQ(c->rope_style, RopeStyle::Normal);
    EXPECT_TRUE(c->softmax_after_topk);
    EXPECT_EQ(c->n_expert, 8);
    EXPECT_EQ(c->n_expert_used, 2);
    EXPECT_EQ(c->n_ff_exp, 256);  // from the tensors: the file has no expert_feed_forward_length
    EXPECT_EQ(c->n_leading_dense, 0);
    EXPECT_FALSE(c->qk_norm);
    EXPECT_FALSE(c->tied_output);
  }
}

TEST(ConfigShipped, Qwen2Moe) {
  for (const char* stem : {"qwen2moe.Q8_0", "qwen2moe.Q4_K_M"}) {
    auto c = config_of(stem);
    ASSERT_TRUE(c.has_value()) << stem << ": " << c.status().message();
    EXPECT_EQ(c->arch, ModelArch::Qwen2Moe);
    EXPECT_TRUE(c->qkv_bias);
    EXPECT_TRUE(c->shexp_gate);
    EXPECT_EQ(c->n_ff_shexp, 512);
    EXPECT_EQ(c->n_expert_shared, 1);
    EXPECT_FALSE(c->expert_weights_norm);
    EXPECT_EQ(c->n_expert_used, 2);
  }
}

void expect_dsv3_common(const ModelConfig& c) {
  EXPECT_EQ(c.arch, ModelArch::DeepSeek2);
  EXPECT_EQ(c.attn, AttnKind::MLA);
  EXPECT_EQ(c.q_lora_rank, 128);
  EXPECT_EQ(c.kv_lora_rank, 128);
  EXPECT_EQ(c.qk_nope_dim, 64);
  EXPECT_EQ(c.qk_rope_dim, 32);
  EXPECT_EQ(c.v_head_dim, 64);
  EXPECT_EQ(c.head_dim_k, 96);
  EXPECT_EQ(c.n_rot, 32);
  EXPECT_EQ(c.rope_style, RopeStyle::Normal);
  EXPECT_FALSE(c.yarn);
  EXPECT_NEAR(c.attn_scale, 1.0 / std::sqrt(96.0), 1e-7);
  EXPECT_EQ(c.n_leading_dense, 1);
  EXPECT_TRUE(c.layer_is_dense(0));
  EXPECT_FALSE(c.layer_is_dense(1));
  EXPECT_EQ(c.n_ff, 512);
  EXPECT_EQ(c.n_expert, 16);
  EXPECT_EQ(c.n_expert_used, 4);
  EXPECT_EQ(c.n_ff_shexp, 256);
  EXPECT_EQ(c.gating, GatingFunc::Sigmoid);
  EXPECT_TRUE(c.exp_probs_bias);
  EXPECT_EQ(c.n_expert_groups, 4);
  EXPECT_EQ(c.n_group_used, 2);
  EXPECT_TRUE(c.expert_weights_norm);
  EXPECT_FLOAT_EQ(c.expert_weights_scale, 2.5f);
}

TEST(ConfigShipped, DeepSeekV3KvBLayout) {
  auto c = config_of("dsv3.Q8_0");
  ASSERT_TRUE(c.has_value()) << c.status().message();
  expect_dsv3_common(*c);
  EXPECT_EQ(c->mla_layout, MlaLayout::KvB);
  EXPECT_EQ(c->n_head_kv, 4);
}

TEST(ConfigShipped, DeepSeekV3SplitLayout) {
  auto c = config_of("dsv3.Q4_K_M");
  ASSERT_TRUE(c.has_value()) << c.status().message();
  expect_dsv3_common(*c);  // per-head sizes from key_length_mla / value_length_mla
  EXPECT_EQ(c->mla_layout, MlaLayout::SplitKV);
  EXPECT_EQ(c->n_head_kv, 1);
}

TEST(ConfigJson, RoundTripsEveryShippedModel) {
  for (const char* stem : {"qwen3moe.Q8_0", "mixtral.Q4_K_M", "qwen2moe.Q8_0", "dsv3.Q8_0",
                           "dsv3.Q4_K_M"}) {
    auto c = config_of(stem);
    ASSERT_TRUE(c.has_value()) << stem << ": " << c.status().message();
    const nlohmann::json j = c->to_json();
    auto back = ModelConfig::from_json(nlohmann::json::parse(j.dump()));
    ASSERT_TRUE(back.has_value()) << stem << ": " << back.status().message();
    EXPECT_EQ(back->to_json(), j) << stem;
  }
}

TEST(ConfigJson, RejectsMissingWrongTypedAndUnknownValues) {
  auto c = config_of("qwen3moe.Q8_0");
  ASSERT_TRUE(c.has_value()) << c.status().message();
  nlohmann::json j = c->to_json();
  nlohmann::json missing = j;
  missing.erase("n_head");
  auto r = ModelConfig::from_json(missing);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.status().message().find("'n_head' is missing"), std::string::npos) << r.status().message();
  nlohmann::json typed = j;
  typed["n_embd"] = "256";
  r = ModelConfig::from_json(typed);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.status().message().find("'n_embd'"), std::string::npos) << r.status().message();
  nlohmann::json arch = j;
  arch["arch"] = "phi3";
  r = ModelConfig::from_json(arch);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.status().message().find("phi3"), std::string::npos) << r.status().message();
  nlohmann::json kv = j;
  kv["n_head_kv"] = 3;
  EXPECT_FALSE(ModelConfig::from_json(kv).has_value());
  EXPECT_FALSE(ModelConfig::from_json(nlohmann::json::array()).has_value());
}

}  // namespace
}  // namespace ktx
