// Expert routing rules (router.cpp) on hand-made logits, and the engine's independence from
// the thread count (each output is one fixed-order dot product, whoever computes it).
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "runtime/engine/engine_internal.h"

namespace ktx {
namespace {

ModelConfig router_config(int64_t n_expert, int64_t k) {
  ModelConfig c;
  c.n_expert = n_expert;
  c.n_expert_used = k;
  return c;
}

TEST(Router, SoftmaxTopKRenormalizedWhenAsked) {
  ModelConfig c = router_config(4, 2);
  const float logits[] = {0.5f, 2.0f, -1.0f, 1.0f};
  int32_t ids[2];
  float w[2];
  route_token(c, logits, nullptr, ids, w);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 3);
  double z = 0;
  for (float l : logits) z += std::exp(l);
  EXPECT_NEAR(w[0], std::exp(2.0) / z, 1e-6);  // not renormalized (qwen2moe)
  c.expert_weights_norm = true;                 // qwen3moe
  route_token(c, logits, nullptr, ids, w);
  EXPECT_NEAR(w[0] + w[1], 1.0, 1e-6);
  EXPECT_NEAR(w[0] / w[1], std::exp(1.0), 1e-5);
}

TEST(Router, MixtralSoftmaxOverSelectedLogits) {
  ModelConfig c = router_config(4, 2);
  c.softmax_after_topk = true;
  const float logits[] = {3.0f, -2.0f, 1.0f, 0.0f};
  int32_t ids[2];
  float w[2];
  route_token(c, logits, nullptr, ids, w);
  EXPECT_EQ(ids[0], 0);
  EXPECT_EQ(ids[1], 2);
  EXPECT_NEAR(w[0], 1.0 / (1.0 + std::exp(-2.0)), 1e-6);
  EXPECT_NEAR(w[0] + w[1], 1.0, 1e-6);
}

TEST(Router, SigmoidBiasSelectsGroupsLimitAndWeightsStayUnbiased) {
  // 8 experts in 4 groups of 2, keep 2 groups, choose 2 experts.
  ModelConfig c = router_config(8, 2);
  c.gating = GatingFunc::Sigmoid;
  c.n_expert_groups = 4;
  c.n_group_used = 2;
  c.expert_weights_norm = true;
  c.expert_weights_scale = 2.5f;
  // Expert 0 alone has the highest score, but its group (0, 1) sums lower than groups
  // (4, 5) and (6, 7); the bias lifts expert 7 above expert 4 for selection only.
  const float logits[] = {4.0f, -6.0f, 0.0f, 0.0f, 2.0f, 1.5f, 1.0f, 1.2f};
  const float bias[] = {0, 0, 0, 0, 0, 0, 0, 0.5f};
  int32_t ids[2];
  float w[2];
  route_token(c, logits, bias, ids, w);
  auto sig = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
  EXPECT_EQ(ids[0], 7);  // sigmoid(1.2) + 0.5 beats sigmoid(2.0)
  EXPECT_EQ(ids[1], 4);
  const double s7 = sig(1.2), s4 = sig(2.0);
  EXPECT_NEAR(w[0], 2.5 * s7 / (s7 + s4), 1e-5);
  EXPECT_NEAR(w[1], 2.5 * s4 / (s7 + s4), 1e-5);
}

TEST(EngineThreads, LogitsDoNotDependOnTheThreadCount) {
  auto f = GGUFFile::open(std::string(KTX_SHARED_DIR) + "/models/dsv3.Q8_0.gguf");
  ASSERT_TRUE(f.has_value()) << f.status().message();
  std::shared_ptr<const GGUFFile> g(std::move(f).value());
  auto cfg = ModelConfig::from_gguf(*g);
  ASSERT_TRUE(cfg.has_value()) << cfg.status().message();
  std::vector<int32_t> toks(40);
  std::iota(toks.begin(), toks.end(), 3);
  std::vector<std::vector<float>> out;
  for (int threads : {1, 3}) {
    EngineOptions opt;
    opt.threads = threads;
    opt.f32_cache_mib = threads == 1 ? 1024 : 0;  // also: cached f32 rows == on-demand rows
    auto m = Model::load(*cfg, g, opt);
    ASSERT_TRUE(m.has_value()) << m.status().message();
    Session s(**m);
    auto r = s.forward(toks, true);
    ASSERT_TRUE(r.has_value()) << r.status().message();
    out.push_back(std::move(r).value());
  }
  ASSERT_EQ(out[0].size(), out[1].size());
  for (size_t i = 0; i < out[0].size(); ++i) ASSERT_EQ(out[0][i], out[1][i]) << "logit " << i;
}

}  // namespace
}  // namespace ktx
