// BatchStep: several sequences advanced together give, for each, exactly the logits its own
// Session::forward gives (the float32 reference program), whatever the mix of prefill chunks
// and decode tokens in a step; greedy continuations do not depend on batching; bad entries
// are refused without changing any session.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/gguf/gguf.h"
#include "runtime/engine/engine.h"

namespace ktx {
namespace {

const std::string kModels = std::string(KTX_SHARED_DIR) + "/models/";

std::unique_ptr<Model> load_model(const std::string& stem, int threads) {
  auto f = GGUFFile::open(kModels + stem + ".gguf");
  EXPECT_TRUE(f.has_value()) << f.status().message();
  std::shared_ptr<const GGUFFile> g(std::move(f).value());
  auto cfg = ModelConfig::from_gguf(*g);
  EXPECT_TRUE(cfg.has_value()) << cfg.status().message();
  EngineOptions opt;
  opt.threads = threads;
  opt.n_ctx = 128;
  auto m = Model::load(*cfg, g, opt);
  EXPECT_TRUE(m.has_value()) << m.status().message();
  return std::move(m).value();
}

int32_t argmax(const float* x, int64_t n) {
  return static_cast<int32_t>(std::max_element(x, x + n) - x);
}

// Greedy continuation of `prompt` by n tokens with a lone session.
std::vector<int32_t> greedy_alone(const Model& m, const std::vector<int32_t>& prompt, int n) {
  Session s(m);
  std::vector<int32_t> out;
  auto logits = s.forward(prompt, false);
  EXPECT_TRUE(logits.has_value());
  const int64_t V = m.config().n_vocab;
  for (int i = 0; i < n; ++i) {
    out.push_back(argmax(logits->data(), V));
    logits = s.forward(std::vector<int32_t>{out.back()}, false);
    EXPECT_TRUE(logits.has_value());
  }
  return out;
}

class Batch : public ::testing::TestWithParam<const char*> {};

TEST_P(Batch, EveryEntryMatchesItsOwnForward) {
  auto m = load_model(GetParam(), 2);
  const int64_t V = m->config().n_vocab;
  // Three sequences with different prompt lengths; sequence 2 joins in the second step.
  const std::vector<std::vector<int32_t>> prompts = {
      {1, 17, 33, 90, 4, 12, 8}, {1, 200, 3}, {1, 5, 6, 7, 8, 9, 10, 11, 12, 13}};
  std::vector<std::vector<float>> want(3);
  for (size_t i = 0; i < 3; ++i) {
    Session s(*m);
    auto r = s.forward(prompts[i], false);
    ASSERT_TRUE(r.has_value()) << r.status().message();
    auto d = s.forward(std::vector<int32_t>{42}, false);
    ASSERT_TRUE(d.has_value());
    want[i] = *d;  // logits after prompt + 42
  }
  Session a(*m), b(*m), c(*m);
  BatchStep step(*m);
  const int32_t tok42[] = {42};
  // Step 1: a whole prompt, b's first chunk (no logits).
  std::vector<int32_t> b1(prompts[1].begin(), prompts[1].begin() + 2);
  std::vector<int32_t> b2(prompts[1].begin() + 2, prompts[1].end());
  BatchEntry s1[] = {{&a, prompts[0], true}, {&b, b1, false}};
  auto r1 = step.run(s1);
  ASSERT_TRUE(r1.has_value()) << r1.status().message();
  EXPECT_EQ(r1->size(), static_cast<size_t>(V));
  // Step 2: a decodes, b finishes its prompt, c prefills all of it.
  BatchEntry s2[] = {{&a, tok42, true}, {&b, b2, false}, {&c, prompts[2], false}};
  auto r2 = step.run(s2);
  ASSERT_TRUE(r2.has_value()) << r2.status().message();
  ASSERT_EQ(r2->size(), static_cast<size_t>(V));
  EXPECT_EQ(std::vector<float>(r2->begin(), r2->end()), want[0]);
  // Step 3: b and c decode together.
  BatchEntry s3[] = {{&c, tok42, true}, {&b, tok42, true}};
  auto r3 = step.run(s3);
  ASSERT_TRUE(r3.has_value()) << r3.status().message();
  ASSERT_EQ(r3->size(), static_cast<size_t>(2 * V));
  EXPECT_EQ(std::vector<float>(r3->begin(), r3->begin() + V), want[2]);
  EXPECT_EQ(std::vector<float>(r3->begin() + V, r3->end()), want[1]);
  EXPECT_EQ(a.n_past(), 8);
  EXPECT_EQ(b.n_past(), 4);
  EXPECT_EQ(c.n_past(), 11);
}

TEST_P(Batch, GreedyContinuationsDoNotDependOnBatching) {
  auto m = load_model(GetParam(), 2);
  const int64_t V = m->config().n_vocab;
  constexpr int kSeqs = 8, kGen = 6;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < kSeqs; ++i) {
    std::vector<int32_t> p = {1};
    for (int j = 0; j < 3 + i % 4; ++j) p.push_back(static_cast<int32_t>((i * 37 + j * 11) % 300 + 2));
    prompts.push_back(p);
  }
  std::vector<std::unique_ptr<Session>> ses;
  std::vector<std::vector<int32_t>> got(kSeqs), next(kSeqs);
  for (int i = 0; i < kSeqs; ++i) ses.push_back(std::make_unique<Session>(*m));
  BatchStep step(*m);
  for (int it = 0; it <= kGen; ++it) {
    std::vector<BatchEntry> entries;
    for (int i = 0; i < kSeqs; ++i)
      entries.push_back({ses[i].get(), it == 0 ? std::span<const int32_t>(prompts[i])
                                               : std::span<const int32_t>(next[i]), true});
    auto r = step.run(entries);
    ASSERT_TRUE(r.has_value()) << r.status().message();
    for (int i = 0; i < kSeqs; ++i) {
      const int32_t t = argmax(r->data() + i * V, V);
      if (it < kGen) got[i].push_back(t);
      next[i] = {t};
    }
  }
  for (int i = 0; i < kSeqs; ++i) EXPECT_EQ(got[i], greedy_alone(*m, prompts[i], kGen)) << i;
}

TEST_P(Batch, CopiedPrefixContinuesLikeTheSource) {
  auto m = load_model(GetParam(), 2);
  const std::vector<int32_t> prompt = {1, 17, 33, 90, 4, 12, 8, 200, 3};
  Session whole(*m), src(*m), dst(*m, 64);
  auto want = whole.forward(prompt, false);
  ASSERT_TRUE(want.has_value());
  ASSERT_TRUE(src.forward(std::span<const int32_t>(prompt.data(), 7), false).has_value());
  ASSERT_TRUE(dst.forward(std::vector<int32_t>{5, 5, 5}, false).has_value());  // replaced
  ASSERT_TRUE(dst.copy_prefix(src, 6).is_ok());
  EXPECT_EQ(dst.n_past(), 6);
  auto got = dst.forward(std::span<const int32_t>(prompt.data() + 6, 3), false);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, *want);
  EXPECT_FALSE(dst.copy_prefix(src, 8).is_ok());  // src holds 7
}

INSTANTIATE_TEST_SUITE_P(Models, Batch, ::testing::Values("qwen3moe.Q8_0", "dsv3.Q4_K_M"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '.', '_');
                           return n;
                         });

TEST(BatchInput, RefusesBadEntriesWithoutChangingSessions) {
  auto m = load_model("mixtral.Q8_0", 1);
  Session a(*m, 4), b(*m, 4);
  BatchStep step(*m);
  const int32_t ok[] = {1, 2}, bad[] = {1, 400}, five[] = {1, 2, 3, 4, 5};
  EXPECT_FALSE(step.run({}).has_value());
  BatchEntry dup[] = {{&a, ok, true}, {&a, ok, true}};
  EXPECT_FALSE(step.run(dup).has_value());
  BatchEntry oob[] = {{&a, ok, true}, {&b, bad, true}};
  auto r = step.run(oob);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.status().message().find("entry 1"), std::string::npos) << r.status().message();
  BatchEntry over[] = {{&a, ok, true}, {&b, five, true}};
  r = step.run(over);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.status().message().find("n_ctx = 4"), std::string::npos) << r.status().message();
  BatchEntry empty[] = {{&a, std::span<const int32_t>(), true}};
  EXPECT_FALSE(step.run(empty).has_value());
  EXPECT_EQ(a.n_past(), 0);
  EXPECT_EQ(b.n_past(), 0);
  BatchEntry none[] = {{&a, ok, false}, {&b, ok, false}};
  auto z = step.run(none);
  ASSERT_TRUE(z.has_value()) << z.status().message();
  EXPECT_TRUE(z->empty());
  EXPECT_EQ(a.n_past(), 2);
  a.truncate(1);
  EXPECT_EQ(a.n_past(), 1);
  a.truncate(9);
  EXPECT_EQ(a.n_past(), 1);
}

}  // namespace
}  // namespace ktx
