// Generated models must route like trained ones: tokens spread over the experts, so benchmarks
// on them see the expert traffic a real model causes. Random weights can instead send most
// tokens of a sequence to a few experts (the shared part of random attention grows through the
// residual stream with depth; see tools/ktx-run/gen/model_layout.cpp). These tests generate deep,
// narrow versions of two preset families (the real expert counts and routing functions, small
// widths so the reference engine runs them in seconds), feed a few thousand pseudo-random
// tokens and bound every MoE layer's busiest expert at twice the mean share.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <numeric>

#include "common/model/config.h"
#include "common/util/rng.h"
#include "runtime/engine/engine.h"
#include "tools/ktx-run/gen/model_layout.h"
#include "tools/ktx-run/gen/presets.h"

namespace ktx {
namespace {

namespace fs = std::filesystem;
using gen_detail::PresetSpec;

constexpr int kSequences = 8;
constexpr int64_t kSeqLen = 256;        // 2048 tokens in all
constexpr double kMaxOverMean = 2.0;

// Generates `spec` (Q8_0 matrices, as the fast kernels read them), runs kSequences fresh
// sessions of random tokens through the reference engine and returns tokens per expert for
// every MoE layer.
std::map<int64_t, std::vector<int64_t>> expert_load(const PresetSpec& spec) {
  const fs::path out = fs::temp_directory_path() /
                       ("ktx_gen_route_" + std::to_string(getpid()) + "_" + spec.name + ".gguf");
  GenOptions o;
  o.output = out.string();
  o.type = GGMLType::Q8_0;
  o.force = true;
  Status st = gen_detail::generate_from_spec(spec, o);
  EXPECT_TRUE(st.is_ok()) << st.message();
  auto opened = GGUFFile::open(out.string());
  fs::remove(out);  // the mapping stays valid
  EXPECT_TRUE(opened.has_value()) << opened.status().message();
  if (!opened) return {};
  std::shared_ptr<const GGUFFile> gguf = std::move(*opened);
  auto cfg = ModelConfig::from_gguf(*gguf);
  EXPECT_TRUE(cfg.has_value()) << cfg.status().message();
  if (!cfg) return {};
  auto model = Model::load(*cfg, gguf, EngineOptions{});
  EXPECT_TRUE(model.has_value()) << model.status().message();
  if (!model) return {};

  OpProfile profile;
  Xoshiro256 rng(7);
  for (int s = 0; s < kSequences; ++s) {
    std::vector<int32_t> ids(kSeqLen);
    for (int32_t& id : ids) id = static_cast<int32_t>(rng.next_u64() % uint64_t(cfg->n_vocab));
    Session session(**model, kSeqLen);
    session.set_profile(&profile);
    auto logits = session.forward(ids, false);
    EXPECT_TRUE(logits.has_value()) << logits.status().message();
  }
  return profile.expert_tokens;
}

void expect_balanced(const PresetSpec& spec) {
  const auto load = expert_load(spec);
  ASSERT_FALSE(load.empty()) << spec.name << ": no MoE layer ran";
  for (const auto& [layer, counts] : load) {
    ASSERT_EQ(static_cast<int64_t>(counts.size()), spec.n_expert);
    const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
    ASSERT_EQ(total, kSequences * kSeqLen * spec.n_expert_used);
    const double mean = double(total) / double(counts.size());
    const int64_t max = *std::max_element(counts.begin(), counts.end());
    const int64_t min = *std::min_element(counts.begin(), counts.end());
    std::printf("%s blk.%lld: min %lld mean %.1f max %lld, max/mean %.2f\n", spec.name.c_str(),
                static_cast<long long>(layer), static_cast<long long>(min), mean,
                static_cast<long long>(max), double(max) / mean);
    EXPECT_LE(double(max) / mean, kMaxOverMean) << spec.name << " blk." << layer;
    EXPECT_GT(min, 0) << spec.name << " blk." << layer << ": an expert received no token";
  }
}

// DeepSeek-V3's routing (sigmoid scores, exp_probs_b selection bias, expert groups) on the tiny
// preset's widths, 16 layers deep.
TEST(RoutingBalance, DeepSeekRoutingSpreadsTokens) {
  PresetSpec p = *gen_detail::find_preset("tiny");
  p.name = "deep-tiny";
  p.n_layer = 16;
  expect_balanced(p);
}

// Qwen3-30B-A3B's routing (softmax, 128 experts top-8) at 24 layers with small widths.
TEST(RoutingBalance, Qwen3RoutingSpreadsTokens) {
  PresetSpec p = *gen_detail::find_preset("qwen3-30b-a3b");
  p.name = "narrow-qwen3";
  p.n_layer = 24;
  p.n_vocab = 2048;
  p.n_embd = 256;
  p.n_head = 4;
  p.n_head_kv = 2;
  p.head_dim = 64;
  p.n_ff_exp = 64;
  expect_balanced(p);
}

}  // namespace
}  // namespace ktx
