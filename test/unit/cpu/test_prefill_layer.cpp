// The prefill MoE layer (MoePrefill on repacked weights) against moe_reference() with the same
// activation rounding, over shapes x weight types x tokens per expert, for the C++ twin (tiers
// reference and avx2, which differ in the decode GEMV a Q6_K down runs), the int16 K-quant GEMM
// of the avx512 tier, and (where the CPU has it) the AMX kernel, which must also equal the twin
// bit for bit where both run the GEMM.
#include <gtest/gtest.h>

#include <cmath>

#include "common/hw/cpu_features.h"
#include "runtime/cpu/prefill_moe.h"
#include "test/unit/cpu/moe_test_util.h"

namespace ktx::cpu {
namespace {

struct LayerCase {
  int64_t k, n, experts, top_k;
  GGMLType gate, up, down;
};

// K and N multiples of their block; N = 96 and 160 are odd numbers of 32-row panel pairs'
// halves (6 and 10 panels), K = 96 leaves the down output a partial panel pair's worth.
const LayerCase kCases[] = {
    {96, 160, 6, 2, GGMLType::Q8_0, GGMLType::Q8_0, GGMLType::Q8_0},
    {256, 96, 5, 2, GGMLType::Q4_K, GGMLType::Q4_K, GGMLType::Q8_0},
    {256, 256, 4, 3, GGMLType::Q4_K, GGMLType::Q5_K, GGMLType::Q4_K},
    {64, 64, 3, 1, GGMLType::Q4_0, GGMLType::Q4_1, GGMLType::Q5_1},
    // Q4_K_M's mix: Q6_K down has no int8 repack and runs the decode GEMV in place.
    {256, 256, 5, 2, GGMLType::Q4_K, GGMLType::Q4_K, GGMLType::Q6_K},
};

MoeDesc desc_of(const LayerCase& c, IsaTier isa) {
  return test::moe_desc(c.k, c.n, c.experts, c.top_k, c.gate, c.up, c.down, 64, isa);
}

// Routing where expert 0 gets `per_expert` tokens, the last expert none, the rest spread.
test::Routing skewed_routing(const MoeDesc& d, int64_t tokens, uint32_t seed) {
  test::Routing r = test::make_routing(d, tokens, test::RoutePattern::spread, seed);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < d.top_k; ++j) {
      int32_t& id = r.ids[t * d.top_k + j];
      if (id == d.n_expert - 1) id = static_cast<int32_t>((t + j) % (d.n_expert - 1));
    }
    r.ids[t * d.top_k] = 0;  // expert 0 sees every token (and maybe twice: still defined)
  }
  return r;
}

void check_layer(const LayerCase& c, IsaTier isa, int64_t tokens, MoeConfig cfg = {}) {
  const MoeDesc d = desc_of(c, isa);
  SCOPED_TRACE(d.to_string() + " " + cfg.to_string() + " tokens=" + std::to_string(tokens));
  const auto w = test::random_experts(d, 21);
  ThreadPool pool(2);
  auto packed = repack_moe(d, w.view(), pool);
  ASSERT_TRUE(packed.has_value()) << packed.status().message();
  auto moe = MoePrefill::create(d, cfg, detect_cpu_isa());
  ASSERT_TRUE(moe.has_value()) << moe.status().message();
  const auto x = test::random_floats(tokens * c.k, 1.0f, 5);
  const test::Routing r = skewed_routing(d, tokens, 9);
  std::vector<float> out(tokens * c.k, NAN), ref(out.size()), scale(out.size());
  ASSERT_TRUE((*moe)->run(*packed, x.data(), r.view(tokens), out.data(), pool));
  ASSERT_TRUE(moe_reference(d, w.view(), x.data(), r.view(tokens), ref.data(),
                            (*moe)->act_rounding(), scale.data()));
  // Same rounding on both sides: float reassociation, and rarely one int16 step of an h
  // element rounded the other way (see test_moe_conformance.cpp): 2e-4 of the |product| sum.
  // With int8 h (act=i8) one such flipped step is 1/127 of its 32-block's max, not 1/32512:
  // measured up to 6e-4 of the sum here, so 2e-3 (a layout or scale slip is of order 1).
  const double rel = cfg.prefill_act == 8 ? 2e-3 : 2e-4;
  for (size_t i = 0; i < out.size(); ++i) {
    ASSERT_NEAR(out[i], ref[i], rel * scale[i] + 1e-6) << "output " << i;
  }
  // The twin comparison needs the same down kernel on both sides: a GEMV down differs by tier.
  // (The int8-activation GEMM's avx512 body against its twin: the same, where down is a GEMM.)
  const bool i8 = cfg.prefill_act == 8;
  if (i8 ? isa != IsaTier::avx512 || !gemm_kq_supported(c.down)
         : isa != IsaTier::amx || !repack_int8_supported(c.down))
    return;
  auto twin = MoePrefill::create(desc_of(c, IsaTier::reference), cfg, detect_cpu_isa());
  ASSERT_TRUE(twin.has_value());
  std::vector<float> out_twin(out.size());
  ASSERT_TRUE((*twin)->run(*packed, x.data(), r.view(tokens), out_twin.data(), pool));
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], out_twin[i]) << "output " << i;
}

class PrefillLayer : public ::testing::TestWithParam<IsaTier> {};

TEST_P(PrefillLayer, MatchesReferenceOverShapesAndTokenCounts) {
  const CpuIsa cpu = detect_cpu_isa();
  if (!isa_tier_supported(GetParam(), cpu)) {
    GTEST_SKIP() << "this CPU lacks the " << isa_tier_name(GetParam()) << " tier";
  }
  for (const LayerCase& c : kCases) {
    const MoeDesc d = desc_of(c, GetParam());
    // The avx512 tier's GEMM is the int16 K-quant one: layers that need the int8 repack are
    // refused with a message instead.
    if (GetParam() == IsaTier::avx512 &&
        !(prefill_gate_up_in_place(d) &&
          (gemm_kq_supported(c.down) || !repack_int8_supported(c.down)))) {
      auto refused = MoePrefill::create(d, MoeConfig{}, cpu);
      ASSERT_FALSE(refused.has_value()) << d.to_string();
      EXPECT_NE(refused.status().message().find("avx512 prefill"), std::string::npos)
          << refused.status().message();
      continue;
    }
    for (int64_t tokens : {1, 15, 16, 17, 33}) check_layer(c, GetParam(), tokens);
  }
}

// The int8-activation K-quant GEMM (config act=i8): the avx512 body and its twin (reference
// tier) against moe_reference with q8_k32 rounding over the K-quant cases (1..33 tokens, an
// expert with every token, one with none), the body equal to the twin bit for bit where down
// is a K-quant GEMM too; other tiers refuse it by name.
TEST(PrefillLayerI8, MatchesReferenceAndTwin) {
  MoeConfig cfg;
  cfg.prefill_act = 8;
  const bool vnni = isa_tier_supported(IsaTier::avx512, detect_cpu_isa());
  for (const LayerCase& c : {kCases[2], kCases[4]}) {
    for (int64_t tokens : {1, 15, 16, 17, 33}) {
      check_layer(c, IsaTier::reference, tokens, cfg);
      if (vnni) check_layer(c, IsaTier::avx512, tokens, cfg);
    }
  }
  auto refused = MoePrefill::create(desc_of(kCases[2], IsaTier::avx2), cfg, detect_cpu_isa());
  if (isa_tier_supported(IsaTier::avx2, detect_cpu_isa())) {
    ASSERT_FALSE(refused.has_value());
    EXPECT_NE(refused.status().message().find("act=i8"), std::string::npos)
        << refused.status().message();
  }
  if (!vnni) GTEST_SKIP() << "this CPU lacks AVX-512 VNNI: only the int8 GEMM's twin ran";
}

TEST(PrefillLayerErrors, RefusesTypesWithoutRepackAndBadRouting) {
  MoeDesc d = desc_of(kCases[2], IsaTier::reference);
  d.up_type = GGMLType::Q6_K;  // gate and up must repack; down may run a GEMV
  auto bad = MoePrefill::create(d, MoeConfig{}, detect_cpu_isa());
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.status().message().find("Q6_K"), std::string::npos);
  d.up_type = GGMLType::Q4_K;
  d.down_type = GGMLType::Q6_K;
  auto gemv_down = MoePrefill::create(d, MoeConfig{}, detect_cpu_isa());
  ASSERT_TRUE(gemv_down.has_value()) << gemv_down.status().message();
  EXPECT_NE((*gemv_down)->kernel_name().find("down gemv_"), std::string::npos)
      << (*gemv_down)->kernel_name();
  // Weights prepared for another down type (Q4_K, read by the K-quant kernel): an error.
  const MoeDesc all_int8 = desc_of(kCases[2], IsaTier::reference);
  const auto w8 = test::random_experts(all_int8, 4);
  ThreadPool pool1(1);
  auto packed8 = repack_moe(all_int8, w8.view(), pool1);
  ASSERT_TRUE(packed8.has_value());
  std::vector<int32_t> ids1 = {0, 1};
  std::vector<float> wts1 = {0.5f, 0.5f}, x1(d.n_embd, 1.0f), out1(d.n_embd);
  EXPECT_FALSE((*gemv_down)->run(*packed8, x1.data(), {1, ids1.data(), wts1.data()},
                                 out1.data(), pool1));

  const MoeDesc good = desc_of(kCases[0], IsaTier::reference);
  const auto w = test::random_experts(good, 3);
  ThreadPool pool(1);
  auto packed = repack_moe(good, w.view(), pool);
  ASSERT_TRUE(packed.has_value());
  auto moe = MoePrefill::create(good, MoeConfig{}, detect_cpu_isa());
  ASSERT_TRUE(moe.has_value());
  std::vector<int32_t> ids = {0, 7};  // 7 >= n_expert
  std::vector<float> wts = {0.5f, 0.5f}, x(good.n_embd, 1.0f), out(good.n_embd);
  const Status s = (*moe)->run(*packed, x.data(), {1, ids.data(), wts.data()}, out.data(), pool);
  EXPECT_FALSE(s);
}

INSTANTIATE_TEST_SUITE_P(Tiers, PrefillLayer,
                         ::testing::Values(IsaTier::reference, IsaTier::avx2, IsaTier::avx512,
                                           IsaTier::amx),
                         [](const auto& info) { return std::string(isa_tier_name(info.param)); });

}  // namespace
}  // namespace ktx::cpu
