// Real-shape presets, computed without writing: parameter counts and sizes of the published
// models, layer cuts, the split-MLA tensor shapes and llama-quantize-style fallbacks.
#include <gtest/gtest.h>

#include "tools/ktx-run/gen/generate.h"

namespace ktx {
namespace {

GenModelPlan plan_of(const std::string& preset, GGMLType type, int64_t layers = 0) {
  GenOptions o;
  o.preset = preset;
  o.type = type;
  o.n_layers = layers;
  Expected<GenModelPlan> p = gen_plan_model(o);
  EXPECT_TRUE(p.has_value()) << p.status().message();
  return p.has_value() ? *p : GenModelPlan{};
}

const GenTensor* find(const GenModelPlan& p, const std::string& name) {
  for (const GenTensor& t : p.tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

TEST(GenPlan, DeepSeekV3FullSize) {
  const GenModelPlan p = plan_of("deepseek-v3", GGMLType::Q4_K);
  EXPECT_EQ(p.n_layers, 61);
  // 671B parameters: 61 layers of the published model (llama.cpp drops the MTP layer).
  EXPECT_GT(p.n_params, 660e9);
  EXPECT_LT(p.n_params, 690e9);
  // Pure Q4_K is 4.5 bits per weight: ~378 GB; Q4_K_M files, with some Q6_K, reach ~404 GB.
  EXPECT_GT(p.data_bytes, 370e9);
  EXPECT_LT(p.data_bytes, 410e9);
  const GenTensor* kb = find(p, "blk.60.attn_k_b.weight");
  ASSERT_NE(kb, nullptr);
  EXPECT_EQ(kb->ne, (std::vector<int64_t>{128, 512, 128}));
  EXPECT_EQ(kb->type, GGMLType::Q5_0);  // rows of 128: not a multiple of 256
  EXPECT_TRUE(kb->fell_back());
  const GenTensor* exps = find(p, "blk.3.ffn_down_exps.weight");
  ASSERT_NE(exps, nullptr);
  EXPECT_EQ(exps->ne, (std::vector<int64_t>{2048, 7168, 256}));
  EXPECT_EQ(exps->type, GGMLType::Q4_K);
  EXPECT_NE(find(p, "blk.2.ffn_gate.weight"), nullptr);
  EXPECT_EQ(find(p, "blk.3.ffn_gate.weight"), nullptr);
  EXPECT_EQ(find(p, "blk.3.ffn_gate_inp.weight")->type, GGMLType::F32);
}

TEST(GenPlan, LayerCutKeepsAnMoELayer) {
  const GenModelPlan one = plan_of("deepseek-v3", GGMLType::Q8_0, 1);
  EXPECT_EQ(one.n_layers, 1);
  EXPECT_NE(find(one, "blk.0.ffn_gate_exps.weight"), nullptr);
  EXPECT_EQ(find(one, "blk.1.attn_norm.weight"), nullptr);
  const GenModelPlan five = plan_of("deepseek-v3", GGMLType::Q8_0, 5);
  EXPECT_NE(find(five, "blk.2.ffn_gate.weight"), nullptr);
  EXPECT_NE(find(five, "blk.3.ffn_gate_exps.weight"), nullptr);
}

TEST(GenPlan, PublishedParameterCounts) {
  struct Case { const char* preset; double lo, hi; } cases[] = {
      {"qwen3-30b-a3b", 30.0e9, 31.0e9},
      {"qwen3-235b-a22b", 234e9, 236e9},
      {"mixtral-8x7b", 46.5e9, 47.0e9},
  };
  for (const Case& c : cases) {
    const GenModelPlan p = plan_of(c.preset, GGMLType::Q8_0);
    EXPECT_GT(p.n_params, c.lo) << c.preset;
    EXPECT_LT(p.n_params, c.hi) << c.preset;
    // Q8_0 is 8.5 bits per weight; norms and routers are F32 but tiny.
    EXPECT_NEAR(static_cast<double>(p.data_bytes), p.n_params * 8.5 / 8, p.n_params * 0.01)
        << c.preset;
  }
}

TEST(GenPlan, QwenShapes) {
  const GenModelPlan p = plan_of("qwen3-30b-a3b", GGMLType::Q6_K, 2);
  const GenTensor* q = find(p, "blk.1.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->ne, (std::vector<int64_t>{2048, 32 * 128}));
  const GenTensor* down = find(p, "blk.1.ffn_down_exps.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->ne, (std::vector<int64_t>{768, 2048, 128}));
  EXPECT_EQ(down->type, GGMLType::Q6_K);  // 768 = 3 x 256
  EXPECT_NE(find(p, "blk.1.attn_k_norm.weight"), nullptr);
  EXPECT_EQ(find(p, "token_embd.weight")->ne, (std::vector<int64_t>{2048, 151936}));
}

TEST(GenPlan, NegativeLayersRejected) {
  GenOptions o;
  o.preset = "tiny";
  o.n_layers = -2;
  Expected<GenModelPlan> p = gen_plan_model(o);
  ASSERT_FALSE(p.has_value());
  EXPECT_NE(p.status().message().find("--layers"), std::string::npos);
}

}  // namespace
}  // namespace ktx
