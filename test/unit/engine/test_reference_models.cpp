// The reference engine against transformers on the shipped tiny models (../shared/models):
// hidden states of sequence 0 after every layer (localizes a mistake to a layer), then the
// full eval bounds on every sequence (logits, top-1, prefill vs decode, greedy, tokenizer).
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "common/gguf/gguf.h"
#include "common/model/config.h"
#include "runtime/engine/engine.h"
#include "tools/ktx-run/eval/eval.h"

namespace ktx {
namespace {

struct Loaded {
  std::shared_ptr<const GGUFFile> gguf;
  std::unique_ptr<Model> model;
  RefFile ref;
};

std::unique_ptr<Loaded> load(const std::string& stem) {
  const std::string dir = std::string(KTX_SHARED_DIR) + "/models/";
  auto l = std::make_unique<Loaded>();
  auto f = GGUFFile::open(dir + stem + ".gguf");
  EXPECT_TRUE(f.has_value()) << f.status().message();
  if (!f) return nullptr;
  l->gguf = std::shared_ptr<const GGUFFile>(std::move(f).value());
  auto cfg = ModelConfig::from_gguf(*l->gguf);
  EXPECT_TRUE(cfg.has_value()) << cfg.status().message();
  if (!cfg) return nullptr;
  EngineOptions opt;
  opt.threads = 2;
  auto m = Model::load(*cfg, l->gguf, opt);
  EXPECT_TRUE(m.has_value()) << m.status().message();
  if (!m) return nullptr;
  l->model = std::move(m).value();
  auto rf = GGUFFile::open(dir + stem + ".ref.gguf");
  EXPECT_TRUE(rf.has_value()) << rf.status().message();
  if (!rf) return nullptr;
  auto ref = RefFile::load(**rf, *cfg);
  EXPECT_TRUE(ref.has_value()) << ref.status().message();
  if (!ref) return nullptr;
  l->ref = std::move(ref).value();
  return l;
}

class ReferenceModel : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceModel, HiddenStatesOfSequence0MatchEveryLayer) {
  auto l = load(GetParam());
  ASSERT_TRUE(l);
  ASSERT_FALSE(l->ref.hidden.empty()) << "reference has no ref.hidden.L tensors";
  const int64_t D = l->model->config().n_embd;
  std::vector<std::vector<float>> got(l->ref.hidden.size());
  Session s(*l->model);
  s.set_hidden_hook([&](int64_t index, std::span<const float> h, int64_t) {
    got.at(index).assign(h.begin(), h.end());
  });
  ASSERT_TRUE(s.forward(l->ref.seqs[0].tokens, true).has_value());
  for (size_t L = 0; L < got.size(); ++L) {
    ASSERT_EQ(got[L].size(), l->ref.hidden[L].size()) << "hidden state " << L;
    for (size_t t = 0; t * D < got[L].size(); ++t) {
      const double err = rel_l2(&got[L][t * D], &l->ref.hidden[L][t * D], D);
      EXPECT_LT(err, 1e-5) << "hidden state " << L << " (after layer " << int64_t(L) - 1
                           << ") at position " << t;
    }
  }
}

TEST_P(ReferenceModel, EvalBoundsHoldOnAllSequences) {
  auto l = load(GetParam());
  ASSERT_TRUE(l);
  auto r = run_eval(*l->model, l->ref, EvalOptions{});
  ASSERT_TRUE(r.has_value()) << r.status().message();
  EXPECT_TRUE(r->pass) << format_eval(*r, GetParam());
  EXPECT_EQ(r->seqs.size(), l->ref.seqs.size());
  EXPECT_GT(r->tok_cases, 0);
}

INSTANTIATE_TEST_SUITE_P(Models, ReferenceModel,
                         ::testing::Values("qwen3moe.Q8_0", "qwen3moe.Q4_K_M", "mixtral.Q8_0",
                                           "mixtral.Q4_K_M", "qwen2moe.Q8_0", "qwen2moe.Q4_K_M",
                                           "dsv3.Q8_0", "dsv3.Q4_K_M"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) if (c == '.') c = '_';
                           return n;
                         });

}  // namespace
}  // namespace ktx

namespace ktx {
namespace {

// A prompt in one call equals the same prompt in two (512 + 88 tokens), with the fast CPU
// attention on an f16 cache as the GPU engine test's CPU side runs it: nothing in a call
// depends on the call's length.
TEST_P(ReferenceModel, OneLongCallEqualsTheSameTokensInTwo) {
  const std::string dir = std::string(KTX_SHARED_DIR) + "/models/";
  auto f = GGUFFile::open(dir + GetParam() + ".gguf");
  ASSERT_TRUE(f.has_value());
  std::shared_ptr<const GGUFFile> g(std::move(f).value());
  auto cfg = ModelConfig::from_gguf(*g);
  ASSERT_TRUE(cfg.has_value());
  ReferenceProgram ref = reference_program(*cfg);
  EngineOptions opt;
  opt.threads = 2;
  opt.program = ref.ops;
  opt.buffers = ref.buffers;
  for (PlanOp& op : opt.program)
    if (op.kind == "attention") op.attrs["kernel"] = "gemv", op.attrs["kv_cache"] = "f16";
  auto m = Model::load(*cfg, g, opt);
  ASSERT_TRUE(m.has_value()) << m.status().message();
  const int64_t V = cfg->n_vocab;
  std::vector<int32_t> prompt;
  for (int i = 0; i < 600; ++i) prompt.push_back((i * 193 + 17) % static_cast<int>(V));
  Session one(**m, 1024), two(**m, 1024);
  auto a = one.forward(prompt, false);
  ASSERT_TRUE(a.has_value()) << a.status().message();
  ASSERT_TRUE(two.forward(std::span<const int32_t>(prompt.data(), 512), false).has_value());
  auto b = two.forward(std::span<const int32_t>(prompt.data() + 512, 88), false);
  ASSERT_TRUE(b.has_value()) << b.status().message();
  EXPECT_LE(rel_l2(a->data(), b->data(), V), 1e-4);
}

}  // namespace
}  // namespace ktx
