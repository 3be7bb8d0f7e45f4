// load_from_plan: a plan written for a shipped model loads it (config from the plan, GGUF
// from the path it names); a GGUF override that is a different file, or a missing plan, is
// refused with a message naming the files. Also the Session's input checks.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "common/gguf/gguf.h"
#include "common/plan/plan.h"
#include "runtime/engine/engine.h"

namespace ktx {
namespace {

const std::string kModels = std::string(KTX_SHARED_DIR) + "/models/";

// A CPU-only plan for `stem` assuming no ISA features, written to a temp file.
std::string write_test_plan(const std::string& stem) {
  auto f = GGUFFile::open(kModels + stem + ".gguf");
  EXPECT_TRUE(f.has_value()) << f.status().message();
  auto cfg = ModelConfig::from_gguf(**f);
  EXPECT_TRUE(cfg.has_value()) << cfg.status().message();
  Plan plan;
  plan.producer = "engine test";
  plan.gguf.path = (*f)->path();
  plan.gguf.total_size = (*f)->total_size();
  plan.gguf.hash = (*f)->identity_hash();
  plan.gguf.n_splits = static_cast<uint32_t>((*f)->n_splits());
  plan.model = *cfg;
  const std::string path =
      (std::filesystem::temp_directory_path() / ("ktx_engine_" + stem + ".plan")).string();
  EXPECT_TRUE(write_plan(plan, path).is_ok());
  return path;
}

TEST(LoadFromPlan, LoadsTheModelThePlanNames) {
  const std::string plan = write_test_plan("qwen2moe.Q8_0");
  EngineOptions opt;
  opt.threads = 1;
  opt.n_ctx = 64;
  auto lm = load_from_plan(plan, "", opt);
  ASSERT_TRUE(lm.has_value()) << lm.status().message();
  EXPECT_EQ(lm->model->config().arch, ModelArch::Qwen2Moe);
  EXPECT_EQ(lm->model->n_ctx(), 64);
  Session s(*lm->model);
  const int32_t toks[] = {0, 5, 7};
  auto logits = s.forward(toks, true);
  ASSERT_TRUE(logits.has_value()) << logits.status().message();
  EXPECT_EQ(logits->size(), 3u * 400u);
  EXPECT_EQ(s.n_past(), 3);
  std::filesystem::remove(plan);
}

TEST(LoadFromPlan, RefusesAnOverrideThatIsAnotherFile) {
  const std::string plan = write_test_plan("qwen2moe.Q8_0");
  auto lm = load_from_plan(plan, kModels + "qwen2moe.Q4_K_M.gguf", EngineOptions{});
  ASSERT_FALSE(lm.has_value());
  EXPECT_NE(lm.status().message().find("qwen2moe.Q4_K_M.gguf"), std::string::npos)
      << lm.status().message();
  std::filesystem::remove(plan);
  EXPECT_FALSE(load_from_plan(plan, "", EngineOptions{}).has_value());
}

TEST(SessionInput, RejectsOverflowBadIdsAndEmptyCallsWithoutChangingState) {
  auto f = GGUFFile::open(kModels + "mixtral.Q8_0.gguf");
  ASSERT_TRUE(f.has_value()) << f.status().message();
  std::shared_ptr<const GGUFFile> g(std::move(f).value());
  auto cfg = ModelConfig::from_gguf(*g);
  ASSERT_TRUE(cfg.has_value()) << cfg.status().message();
  auto m = Model::load(*cfg, g, EngineOptions{});
  ASSERT_TRUE(m.has_value()) << m.status().message();
  Session s(**m, 4);
  const int32_t bad[] = {0, 400};
  auto r = s.forward(bad, false);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.status().message().find("400"), std::string::npos) << r.status().message();
  EXPECT_FALSE(s.forward({}, false).has_value());
  const int32_t five[] = {0, 1, 2, 3, 4};
  r = s.forward(five, false);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.status().message().find("n_ctx = 4"), std::string::npos) << r.status().message();
  EXPECT_EQ(s.n_past(), 0);
  const int32_t four[] = {0, 1, 2, 3};
  r = s.forward(four, false);
  ASSERT_TRUE(r.has_value()) << r.status().message();
  EXPECT_EQ(r->size(), 400u);
  EXPECT_EQ(s.n_past(), 4);
  const int32_t one[] = {5};
  EXPECT_FALSE(s.forward(one, false).has_value());
  s.reset();
  EXPECT_TRUE(s.forward(one, false).has_value());
}

}  // namespace
}  // namespace ktx
