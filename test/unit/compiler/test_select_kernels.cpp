// Kernel selection (compiler/passes/KernelChoice.h): the descriptor records the op's shape and
// types and the profile's best tier; a [tuned] entry is used only for its exact descriptor; the
// prefill pair exists on AMX hosts where the gate and up types repack exactly, and on AVX-512
// hosts for K-quant gate/up from a tokens-per-expert threshold; tiers map to the features the plan then requires.
#include <gtest/gtest.h>

#include "compiler/passes/KernelChoice.h"
#include "runtime/cpu/repack_int8.h"

namespace ktx::kt {
namespace {

MoeShape dsv3_like(GGMLType down = GGMLType::Q4_K) {
  return {7168, 2048, 256, 8, GGMLType::Q4_K, GGMLType::Q4_K, down};
}

HwProfile avx2_host(int threads) {
  HwProfile hw;
  hw.cpu.isa.avx2 = hw.cpu.isa.fma = hw.cpu.isa.f16c = true;
  hw.cpu.physical_cores = 32;
  hw.budgets.threads = threads;
  return hw;
}

HwProfile amx_host(int threads) {
  HwProfile hw = avx2_host(threads);
  hw.cpu.isa.avx512f = hw.cpu.isa.avx512bw = hw.cpu.isa.avx512vl = hw.cpu.isa.avx512_vnni = true;
  hw.cpu.isa.amx_tile = hw.cpu.isa.amx_int8 = hw.cpu.isa.amx_bf16 = true;
  return hw;
}

TEST(SelectKernels, DescriptorCarriesShapeTypesAndBestTier) {
  HwProfile hw = avx2_host(8);
  auto c = choose_moe_kernels(dsv3_like(GGMLType::Q6_K), hw, 4096);
  ASSERT_TRUE(c) << c.status().message();
  EXPECT_EQ(c->decode.n_embd, 7168);
  EXPECT_EQ(c->decode.n_ff, 2048);
  EXPECT_EQ(c->decode.n_expert, 256);
  EXPECT_EQ(c->decode.top_k, 8);
  EXPECT_EQ(c->decode.gate_type, GGMLType::Q4_K);
  EXPECT_EQ(c->decode.down_type, GGMLType::Q6_K);
  EXPECT_EQ(c->decode.max_tokens, kDecodeMaxTokens);
  EXPECT_EQ(c->decode.isa, cpu::IsaTier::avx2);
  // The string the plan stores parses back to the same descriptor.
  auto back = cpu::MoeDesc::parse(c->decode.to_string());
  ASSERT_TRUE(back) << back.status().message();
  EXPECT_EQ(*back, c->decode);
  EXPECT_FALSE(c->decode_tuned);
  EXPECT_EQ(c->decode_config, cpu::select_moe_config(c->decode, 8));

  hw.cpu.isa.avx512f = hw.cpu.isa.avx512bw = hw.cpu.isa.avx512vl = hw.cpu.isa.avx512_vnni = true;
  c = choose_moe_kernels(dsv3_like(), hw, 4096);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->decode.isa, cpu::IsaTier::avx512);
  hw.cpu.isa = CpuIsa{};
  c = choose_moe_kernels(dsv3_like(), hw, 4096);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->decode.isa, cpu::IsaTier::reference);
}

TEST(SelectKernels, ThreadsComeFromTheBudgetElseTheCores) {
  auto c = choose_moe_kernels(dsv3_like(), avx2_host(0), 4096);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->decode_config, cpu::select_moe_config(c->decode, 32));
  EXPECT_EQ(c->decode_config.threads, 32);
}

TEST(SelectKernels, TunedEntryAppliesToItsExactDescriptorOnly) {
  HwProfile hw = amx_host(8);
  auto plain = choose_moe_kernels(dsv3_like(), hw, 4096);
  ASSERT_TRUE(plain);
  cpu::MoeConfig tuned{96, 3, 5};
  ASSERT_NE(tuned, plain->decode_config);
  hw.tuned[plain->decode.to_string()] = tuned.to_string();
  // A descriptor differing in one field (down type) must not pick the entry up.
  cpu::MoeDesc other = plain->decode;
  other.down_type = GGMLType::Q8_0;
  hw.tuned[other.to_string()] = cpu::MoeConfig{8, 1, 1}.to_string();

  auto c = choose_moe_kernels(dsv3_like(), hw, 4096);
  ASSERT_TRUE(c) << c.status().message();
  EXPECT_TRUE(c->decode_tuned);
  EXPECT_EQ(c->decode_config, tuned);
  // The prefill descriptor (other max_tokens) has no entry: selected.
  ASSERT_TRUE(c->prefill);
  EXPECT_FALSE(c->prefill_tuned);
  EXPECT_EQ(c->prefill_config, cpu::select_moe_config(*c->prefill, 8));
}

TEST(SelectKernels, MalformedTunedValueIsAnErrorNamingTheKey) {
  HwProfile hw = avx2_host(8);
  auto plain = choose_moe_kernels(dsv3_like(), hw, 4096);
  ASSERT_TRUE(plain);
  hw.tuned[plain->decode.to_string()] = "cfg:rows_per_task=0,unroll=2,threads=0";
  auto c = choose_moe_kernels(dsv3_like(), hw, 4096);
  ASSERT_FALSE(c);
  EXPECT_NE(c.status().message().find(plain->decode.to_string()), std::string::npos)
      << c.status().message();
  EXPECT_NE(c.status().message().find("rows_per_task"), std::string::npos) << c.status().message();
}

TEST(SelectKernels, PrefillWhereGateAndUpRepackExactly) {
  const HwProfile hw = amx_host(8);
  for (GGMLType gate_up : {GGMLType::Q4_K, GGMLType::Q8_0, GGMLType::Q6_K, GGMLType::BF16}) {
    MoeShape shape = dsv3_like(GGMLType::Q6_K);  // any down: without repack it runs a GEMV
    shape.gate = shape.up = gate_up;
    auto c = choose_moe_kernels(shape, hw, 2048);
    ASSERT_TRUE(c) << c.status().message();
    EXPECT_EQ(c->decode.isa, cpu::IsaTier::amx);
    EXPECT_EQ(c->prefill.has_value(), cpu::repack_int8_supported(gate_up))
        << ggml_type_name(static_cast<uint32_t>(gate_up));
    if (!c->prefill) continue;
    EXPECT_EQ(c->prefill->max_tokens, 2048);
    cpu::MoeDesc same = *c->prefill;
    same.max_tokens = c->decode.max_tokens;
    EXPECT_EQ(same, c->decode);  // only the token count differs
  }
}

// AMX prefills from the first call too large for decode.
TEST(SelectKernels, AmxPrefillsFromSeventeenTokens) {
  auto c = choose_moe_kernels(dsv3_like(), amx_host(8), 2048);
  ASSERT_TRUE(c) << c.status().message();
  ASSERT_TRUE(c->prefill);
  EXPECT_EQ(c->prefill_min_tokens, kDecodeMaxTokens + 1);
}

// AVX-512 runs the K-quant GEMM only on Q4_K/Q5_K gate and up with a down the GEMM or the
// decode GEMV reads in place: by default its int8-activation form (config act=i8) from 8
// tokens per expert on average, with PrefillAct::i16 the int16 form from 24; AVX2 the int16
// form on 8-lane vectors from 40.
TEST(SelectKernels, VectorTiersPrefillKQuantsFromTheirTokensPerExpert) {
  HwProfile hw = amx_host(8);
  hw.cpu.isa.amx_tile = hw.cpu.isa.amx_int8 = hw.cpu.isa.amx_bf16 = false;
  for (GGMLType down : {GGMLType::Q4_K, GGMLType::Q5_K, GGMLType::Q6_K}) {
    for (PrefillAct act : {PrefillAct::automatic, PrefillAct::i8, PrefillAct::i16}) {
      auto c = choose_moe_kernels(dsv3_like(down), hw, 4096, act);
      ASSERT_TRUE(c) << c.status().message();
      EXPECT_EQ(c->decode.isa, cpu::IsaTier::avx512);
      ASSERT_TRUE(c->prefill) << c->decode.to_string();
      EXPECT_EQ(c->prefill->isa, cpu::IsaTier::avx512);
      const bool i16 = act == PrefillAct::i16;
      EXPECT_EQ(c->prefill_min_tokens, (i16 ? 24 : 8) * 256 / 8);  // 256 experts, top 8
      EXPECT_EQ(c->prefill_config.prefill_act, i16 ? 16 : 8);
      EXPECT_EQ(c->decode_config.prefill_act, 16);
    }
  }
  auto i8_ctx = choose_moe_kernels(dsv3_like(), hw, 512);
  ASSERT_TRUE(i8_ctx);
  EXPECT_TRUE(i8_ctx->prefill) << "the int8 GEMM starts at 256 tokens";
  // A context shorter than the threshold never reaches it: no prefill kernel.
  auto short_ctx = choose_moe_kernels(dsv3_like(), hw, 512, PrefillAct::i16);
  ASSERT_TRUE(short_ctx);
  EXPECT_FALSE(short_ctx->prefill);
  // Q8_0 down (an int8 repack, not read in place) and Q8_0 gate/up: no avx512 GEMM.
  MoeShape q8 = dsv3_like(GGMLType::Q8_0);
  auto c = choose_moe_kernels(q8, hw, 4096);
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->prefill);
  q8.gate = q8.up = GGMLType::Q8_0;
  c = choose_moe_kernels(q8, hw, 4096);
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->prefill);
  // Every token in every expert: 24 tokens (int16), the first call past decode (int8).
  MoeShape small = dsv3_like();
  small.n_expert = 8, small.top_k = 8;
  c = choose_moe_kernels(small, hw, 4096, PrefillAct::i16);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->prefill);
  EXPECT_EQ(c->prefill_min_tokens, 24);
  c = choose_moe_kernels(small, hw, 4096);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->prefill);
  EXPECT_EQ(c->prefill_min_tokens, kDecodeMaxTokens + 1);

  // AVX2: the same GEMM on 8-lane vectors, from 40 tokens per expert.
  auto avx2 = choose_moe_kernels(dsv3_like(), avx2_host(8), 4096);
  ASSERT_TRUE(avx2) << avx2.status().message();
  EXPECT_EQ(avx2->decode.isa, cpu::IsaTier::avx2);
  ASSERT_TRUE(avx2->prefill.has_value());
  EXPECT_EQ(avx2->prefill->isa, cpu::IsaTier::avx2);
  EXPECT_EQ(avx2->prefill_min_tokens, 40 * 256 / 8);
  EXPECT_EQ(avx2->prefill_config.prefill_act, 16) << "the int8 form is AVX-512 only";
  auto avx2_short = choose_moe_kernels(dsv3_like(), avx2_host(8), 1024);
  ASSERT_TRUE(avx2_short);
  EXPECT_FALSE(avx2_short->prefill) << "a context under 1280 tokens never reaches the GEMM";
  auto avx2_q8 = choose_moe_kernels(dsv3_like(GGMLType::Q8_0), avx2_host(8), 4096);
  ASSERT_TRUE(avx2_q8);
  EXPECT_FALSE(avx2_q8->prefill) << "Q8_0 down is repacked: no AVX2 GEMM";
}

TEST(SelectKernels, InvalidShapeIsAnError) {
  MoeShape s = dsv3_like();
  s.n_embd = 7000;  // not a whole number of Q4_K blocks
  auto c = choose_moe_kernels(s, avx2_host(8), 4096);
  ASSERT_FALSE(c);
  EXPECT_NE(c.status().message().find("gate"), std::string::npos) << c.status().message();
  s = dsv3_like();
  s.top_k = 300;
  c = choose_moe_kernels(s, avx2_host(8), 4096);
  ASSERT_FALSE(c);
  EXPECT_NE(c.status().message().find("top_k=300"), std::string::npos) << c.status().message();
}

TEST(SelectKernels, TierFeaturesGiveExactlyThatTier) {
  EXPECT_TRUE(isa_features_for(cpu::IsaTier::reference).empty());
  for (cpu::IsaTier tier : {cpu::IsaTier::avx2, cpu::IsaTier::avx512, cpu::IsaTier::amx}) {
    CpuIsa isa;
    for (const std::string& name : isa_features_for(tier)) {
      bool* flag = isa.flag(name);
      ASSERT_NE(flag, nullptr) << name;
      *flag = true;
    }
    EXPECT_TRUE(cpu::isa_tier_supported(tier, isa)) << cpu::isa_tier_name(tier);
    EXPECT_EQ(cpu::best_isa_tier(isa), tier) << cpu::isa_tier_name(tier);
  }
}

}  // namespace
}  // namespace ktx::kt
