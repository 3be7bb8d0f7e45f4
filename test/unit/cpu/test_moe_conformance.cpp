// Conformance of the CPU expert paths against the reference (the test-backend-ops idea): one
// table of shapes and weight types, every fast path compared with moe_reference().
//
// Error bounds. Fast paths may differ from the exact reference only by activation quantization
// (int16-grade blocks, act_quant.h: scale max|x|/32512, so each element moves by at most half
// a step). Two checks:
//  * tight: against the reference that applies the same activation rounding. What remains is
//    float reassociation (~1e-6 of S, where S is the sum of |products| behind each output) and,
//    rarely, one step of an h element rounded the other way because the fast h differed in its
//    last float bits: that costs |down[k][n]|·max|h|/32512, far below 1e-4·S. Bound 2e-4·S.
//  * loose: against the exact reference. Each stage's rounding is at most max|block|/65024 per
//    element, about 6e-5 of the mean |product| for Gaussian data (block max ~4x the mean |x|);
//    two stages and SiLU·up propagation give a worst case near 2e-4 of S, bound 4e-4·S; random
//    signs make the mean error far smaller, bound 4e-5·S on the mean. (The int8 activations
//    used before moved outputs 256 times as far: 5e-2 and 5e-3 were the bounds then.)
// BF16 and F16 kernels read f32 activations: nothing is rounded, so only reassociation remains.
// Generated kernels exist for AVX2 and AVX-512 (Q4_K Q5_K Q6_K Q8_0 Q4_0 BF16 F16); the avx512
// and amx tiers run (and pick the strongest kernel at or below their tier) only on CPUs that
// have them, and skip with the reason here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/hw/cpu_features.h"
#include "runtime/cpu/jit/gemv.h"
#include "runtime/cpu/jit/gemv_avx512.h"
#include "runtime/cpu/moe_decode.h"
#include "test/unit/cpu/moe_test_util.h"

namespace ktx::cpu {
namespace {

using test::RoutePattern;

struct Case {
  const char* name;
  int64_t k, n, n_expert, top_k;
  GGMLType gate, up, down;
  int64_t rows_per_task;  // not a divisor of n or k: tail tasks
  int unroll;             // not a divisor of the block count where possible: K tails
};

constexpr GGMLType Q8_0 = GGMLType::Q8_0, Q4_K = GGMLType::Q4_K, Q6_K = GGMLType::Q6_K;

const Case kCases[] = {
    {"q8_0", 96, 64, 8, 2, Q8_0, Q8_0, Q8_0, 40, 2},          // 3 and 2 blocks per row
    {"q8_0_u3", 160, 96, 8, 4, Q8_0, Q8_0, Q8_0, 40, 3},
    {"q8_0_u4", 224, 32, 6, 3, Q8_0, Q8_0, Q8_0, 24, 4},
    {"q4_k", 256, 256, 8, 2, Q4_K, Q4_K, Q4_K, 40, 2},
    {"q4_k_wide", 512, 256, 16, 4, Q4_K, Q4_K, Q4_K, 48, 1},
    {"q4_k_m", 256, 512, 8, 2, Q4_K, Q4_K, Q6_K, 100, 2},    // Q4_K_M mixes Q6_K down
    {"q8_0_q4_k", 256, 256, 8, 2, Q8_0, Q4_K, Q8_0, 64, 2},  // two activation formats
    {"q4_0", 128, 64, 8, 2, GGMLType::Q4_0, GGMLType::Q4_0, GGMLType::Q4_0, 24, 2},
    {"q4_1", 64, 64, 4, 2, GGMLType::Q4_1, GGMLType::Q4_1, GGMLType::Q4_1, 24, 2},
    {"q5_0", 64, 96, 4, 2, GGMLType::Q5_0, GGMLType::Q5_0, GGMLType::Q5_0, 24, 2},
    {"q5_1", 96, 64, 4, 2, GGMLType::Q5_1, GGMLType::Q5_1, GGMLType::Q5_1, 24, 2},
    {"q2_k", 256, 256, 4, 2, GGMLType::Q2_K, GGMLType::Q2_K, GGMLType::Q2_K, 100, 2},
    {"q3_k", 256, 256, 4, 2, GGMLType::Q3_K, GGMLType::Q3_K, GGMLType::Q3_K, 100, 2},
    {"q5_k", 256, 256, 4, 2, GGMLType::Q5_K, GGMLType::Q5_K, GGMLType::Q5_K, 100, 2},
    {"q6_k", 256, 256, 4, 2, Q6_K, Q6_K, Q6_K, 100, 2},
    {"q5_k_m", 768, 512, 6, 3, GGMLType::Q5_K, GGMLType::Q5_K, Q6_K, 72, 2},  // Q5_K_M mix
    {"q6_k_wide", 512, 768, 8, 2, Q6_K, Q4_K, Q6_K, 200, 2},
    {"bf16", 64, 48, 4, 2, GGMLType::BF16, GGMLType::BF16, GGMLType::BF16, 20, 2},
    {"f16", 64, 48, 4, 2, GGMLType::F16, GGMLType::F16, GGMLType::F16, 20, 2},
    // BF16/F16 rows have no block: K and N tails of every width the kernels split off
    // (k=100, 37, 7, 5: partial vectors; 200: whole vectors after the loop).
    {"bf16_tail", 100, 37, 4, 2, GGMLType::BF16, GGMLType::BF16, GGMLType::BF16, 20, 2},
    {"f16_tail", 200, 13, 6, 3, GGMLType::F16, GGMLType::F16, GGMLType::F16, 8, 3},
    {"bf16_tiny", 7, 5, 4, 2, GGMLType::BF16, GGMLType::F16, GGMLType::BF16, 3, 1},
    {"f32", 64, 48, 4, 2, GGMLType::F32, GGMLType::F32, GGMLType::F32, 20, 2},
};

MoeDesc desc_of(const Case& c, IsaTier tier) {
  return test::moe_desc(c.k, c.n, c.n_expert, c.top_k, c.gate, c.up, c.down, 8, tier);
}

class Conformance : public ::testing::TestWithParam<IsaTier> {
 protected:
  void SetUp() override {
    cpu_ = detect_cpu_isa();
    if (!isa_tier_supported(GetParam(), cpu_)) {
      GTEST_SKIP() << "this CPU lacks the " << isa_tier_name(GetParam())
                   << " tier (has: " << fmt::format("{}", fmt::join(cpu_.names(), " "))
                   << "); its kernels run on the accelerator machine";
    }
  }
  CpuIsa cpu_;
};

// Fast GEMV vs the dequantized row · rounded activations, for every kernel the tier selects.
TEST_P(Conformance, GemvMatchesDequantizedDot) {
  for (const Case& c : kCases) {
    const GemvDesc gd{c.gate, c.k, c.unroll, GetParam()};
    auto kernel = make_gemv(gd, cpu_);
    ASSERT_TRUE(kernel) << kernel.status().message();
    const ActFormat fmt_in = (*kernel)->act_format();
    const int64_t rows = 5, tokens = 7;  // 7: a group of 4 and a tail of 3 (or pairs + 1)
    auto w = test::random_rows(c.gate, rows, c.k, 11);
    auto x = test::random_floats(tokens * c.k, 1.0f, 12);
    const size_t ab = act_row_bytes(fmt_in, c.k);
    std::vector<uint8_t> act(tokens * ab);
    for (int64_t t = 0; t < tokens; ++t) {
      quantize_act_row(fmt_in, x.data() + t * c.k, act.data() + t * ab, c.k);
      round_act_row(fmt_in, x.data() + t * c.k, c.k);  // what the kernel sees
    }
    std::vector<float> out(tokens * (rows + 1), -1.0f), wrow(c.k);
    const int64_t rb = static_cast<int64_t>(ggml_row_bytes(c.gate, c.k).value());
    GemvArgs args{w.data(), rb, act.data(), static_cast<int64_t>(ab), out.data(), rows + 1,
                  rows, tokens};
    (*kernel)->run(args);
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(c.gate, w.data() + r * rb, wrow.data(), c.k);
      for (int64_t t = 0; t < tokens; ++t) {
        double ref = 0.0, scale = 0.0;
        for (int64_t i = 0; i < c.k; ++i) {
          ref += static_cast<double>(wrow[i]) * x[t * c.k + i];
          scale += std::fabs(static_cast<double>(wrow[i]) * x[t * c.k + i]);
        }
        // Block sums are exact integers; only the per-block float scaling and the lane sums
        // round: a few float epsilons per block, relative to the sum of |products|.
        const double tol = 4.0 * (c.k / 32 + 16) * 1.2e-7 * scale + 1e-30;
        EXPECT_NEAR(out[t * (rows + 1) + r], ref, tol)
            << c.name << " " << (*kernel)->name() << " row " << r << " token " << t;
      }
    }
    for (int64_t t = 0; t < tokens; ++t) {  // the column past n_rows is never written
      EXPECT_EQ(out[t * (rows + 1) + rows], -1.0f) << c.name << " wrote past its rows";
    }
  }
}

struct ErrorStats {
  double max_rel = 0.0, sum_rel = 0.0;
  int64_t count = 0;
  void add(double err, double scale) {
    const double rel = err / std::max(scale, 1e-30);
    max_rel = std::max(max_rel, rel);
    sum_rel += rel;
    ++count;
  }
  double mean() const { return count ? sum_rel / count : 0.0; }
};

// The fused decode layer vs the reference, over tokens 1..8 and three routing patterns.
TEST_P(Conformance, MoeDecodeMatchesReference) {
  ThreadPool pool(3);
  for (const Case& c : kCases) {
    const MoeDesc desc = desc_of(c, GetParam());
    MoeConfig cfg;
    cfg.rows_per_task = c.rows_per_task;
    cfg.unroll = c.unroll;
    auto moe = MoeDecode::create(desc, cfg, cpu_);
    ASSERT_TRUE(moe) << moe.status().message();
    const auto experts = test::random_experts(desc, 100);
    ErrorStats tight, loose;
    for (int64_t n_tokens : {1, 2, 5, 8}) {
      for (RoutePattern p : {RoutePattern::spread, RoutePattern::clustered,
                             RoutePattern::repeated}) {
        const auto x = test::random_floats(n_tokens * c.k, 1.0f, 7 + n_tokens);
        const auto routing = test::make_routing(desc, n_tokens, p, 3 + n_tokens);
        std::vector<float> fast(n_tokens * c.k, NAN), ref_q(fast.size()), ref(fast.size()),
            scale(fast.size());
        ASSERT_TRUE((*moe)->run(experts.view(), x.data(), routing.view(n_tokens), fast.data(),
                                pool).is_ok());
        ASSERT_TRUE(moe_reference(desc, experts.view(), x.data(), routing.view(n_tokens),
                                  ref_q.data(), (*moe)->act_rounding(), scale.data()).is_ok());
        const ActRounding rounding = (*moe)->act_rounding();
        if (rounding.gate_in == ActFormat::f32 && rounding.up_in == ActFormat::f32 &&
            rounding.down_in == ActFormat::f32) {
          ref = ref_q;  // nothing rounded: the exact reference is the same computation
        } else {
          ASSERT_TRUE(moe_reference(desc, experts.view(), x.data(), routing.view(n_tokens),
                                    ref.data()).is_ok());
        }
        for (size_t i = 0; i < fast.size(); ++i) {
          ASSERT_TRUE(std::isfinite(fast[i])) << c.name << " element " << i;
          ASSERT_NEAR(fast[i], ref_q[i], 2e-4 * scale[i])
              << c.name << " tokens=" << n_tokens << " pattern=" << static_cast<int>(p)
              << " element " << i << " kernels: " << (*moe)->kernel_names();
          tight.add(std::fabs(fast[i] - ref_q[i]), scale[i]);
          loose.add(std::fabs(fast[i] - ref[i]), scale[i]);
        }
      }
    }
    EXPECT_LE(loose.max_rel, 4e-4) << c.name;
    EXPECT_LE(loose.mean(), 4e-5) << c.name;
    std::printf("  %-10s %-58s vs rounded ref: max %.2e mean %.2e | vs exact: max %.2e mean %.2e\n",
                c.name, (*moe)->kernel_names().c_str(), tight.max_rel, tight.mean(),
                loose.max_rel, loose.mean());
  }
}

// On an avx512 CPU the avx512 tier must run its own kernels for the types it has, not fall back
// silently to AVX2 (the tests above would still pass, measuring the wrong thing).
TEST_P(Conformance, StrongestKernelIsSelected) {
  if (GetParam() != IsaTier::avx512) GTEST_SKIP() << "checks the avx512 tier's choices only";
  for (GGMLType type : {Q8_0, GGMLType::Q4_0, Q4_K, GGMLType::Q5_K, Q6_K, GGMLType::BF16,
                        GGMLType::F16}) {
    auto kernel = make_gemv(GemvDesc{type, 512, 2, IsaTier::avx512}, cpu_);
    ASSERT_TRUE(kernel) << kernel.status().message();
    EXPECT_NE((*kernel)->name().find("avx512"), std::string::npos) << (*kernel)->name();
  }
}

// Some kernels' int32 sums are tight: Q6_K (|Σ| <= 2 130 706 432 per dword and half
// super-block) and Q5_K (≈ 2.03e9 per super-block on AVX2). Their extreme levels and scales
// against the largest int16-grade activations, both signs, must not wrap.
std::vector<uint8_t> extreme_rows(GGMLType type, int64_t k) {
  const int64_t rb = static_cast<int64_t>(ggml_row_bytes(type, k).value());
  std::vector<uint8_t> w(2 * rb, 0);
  const uint16_t one = fp32_to_fp16(1.0f), zero = fp32_to_fp16(0.0f);
  for (int64_t b = 0; b < 2 * k / 256; ++b) {
    const bool high = b >= k / 256;  // row 1
    if (type == Q6_K) {  // row 0: q = 0 (w = -32), scales -128; row 1: q = 63, scales 127
      uint8_t* blk = w.data() + b * 210;
      std::memset(blk, high ? 0xff : 0x00, 192);
      std::memset(blk + 192, high ? 0x7f : 0x80, 16);
      std::memcpy(blk + 208, &one, 2);
    } else {             // Q5_K: q = 31, scales 63 (row 0: d = 1, row 1: d = -1), dmin 0
      uint8_t* blk = w.data() + b * 176;
      const uint16_t d = high ? fp32_to_fp16(-1.0f) : one;
      std::memcpy(blk, &d, 2);
      std::memcpy(blk + 2, &zero, 2);
      std::memset(blk + 4, 0xff, 172);
    }
  }
  return w;
}

TEST_P(Conformance, TightIntegerSumsDoNotWrap) {
  constexpr int64_t k = 512;
  for (GGMLType type : {Q6_K, GGMLType::Q5_K}) {
    auto kernel = make_gemv(GemvDesc{type, k, 2, GetParam()}, cpu_);
    ASSERT_TRUE(kernel) << kernel.status().message();
    const auto w = extreme_rows(type, k);
    const int64_t rb = static_cast<int64_t>(ggml_row_bytes(type, k).value());
    const ActFormat f = (*kernel)->act_format();
    const size_t ab = act_row_bytes(f, k);
    std::vector<float> x(2 * k);
    for (int64_t i = 0; i < k; ++i) x[i] = 1.0f, x[k + i] = -1.0f;
    std::vector<uint8_t> act(2 * ab);
    for (int t = 0; t < 2; ++t) {
      quantize_act_row(f, x.data() + t * k, act.data() + t * ab, k);
      round_act_row(f, x.data() + t * k, k);
    }
    std::vector<float> out(4, NAN), row(k);
    GemvArgs args{w.data(), rb, act.data(), static_cast<int64_t>(ab), out.data(), 2, 2, 2};
    (*kernel)->run(args);
    for (int64_t r = 0; r < 2; ++r) {
      dequantize_row(type, w.data() + r * rb, row.data(), k);
      for (int t = 0; t < 2; ++t) {
        double ref = 0.0;
        for (int64_t i = 0; i < k; ++i) ref += static_cast<double>(row[i]) * x[t * k + i];
        ASSERT_NE(ref, 0.0);
        EXPECT_NEAR(out[t * 2 + r], ref, 1e-5 * std::fabs(ref))
            << (*kernel)->name() << " row " << r << " token " << t;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tiers, Conformance,
                         ::testing::Values(IsaTier::reference, IsaTier::avx2, IsaTier::avx512,
                                           IsaTier::amx),
                         [](const auto& info) { return std::string(isa_tier_name(info.param)); });

}  // namespace
}  // namespace ktx::cpu

namespace ktx::cpu {
namespace {

// Generating code needs no AVX-512 (only running it does): every avx512 kernel is emitted and
// made executable on any x86-64 host, so encoding errors show up in CI too.
TEST(Avx512Kernels, GenerateOnAnyHost) {
  struct { GGMLType type; int64_t k; } shapes[] = {
      {Q8_0, 32}, {Q8_0, 96}, {GGMLType::Q4_0, 7168}, {Q4_K, 256}, {Q4_K, 7168},
      {GGMLType::Q5_K, 2048}, {Q6_K, 256}, {Q6_K, 2048}, {GGMLType::BF16, 1},
      {GGMLType::BF16, 100}, {GGMLType::BF16, 7168}, {GGMLType::F16, 37}, {GGMLType::F16, 2048}};
  const Avx512Tuning tunings[] = {{}, {PrefetchHint::none, 0}, {PrefetchHint::t0, 1536},
                                  {PrefetchHint::nta, 512}};
  for (const auto& s : shapes) {
    for (const Avx512Tuning& tu : tunings) {
      const GemvDesc d{s.type, s.k, 2, IsaTier::avx512};
      const bool half = s.type == GGMLType::BF16 || s.type == GGMLType::F16;
      auto kernel = half            ? create_gemv_f16_avx512(d, tu)
                    : s.type == Q6_K ? create_gemv_q6_k_avx512(d, tu)
                    : (s.type == Q4_K || s.type == GGMLType::Q5_K)
                        ? create_gemv_q4_k_avx512(d, tu)
                        : create_gemv_legacy_avx512(d, tu);
      ASSERT_TRUE(kernel) << d.to_string() << " " << tu.to_string() << ": "
                          << kernel.status().message();
      EXPECT_FALSE((*kernel)->code().empty()) << d.to_string();
    }
  }
  EXPECT_FALSE(create_gemv_q4_k_avx512(GemvDesc{Q4_K, 128, 2, IsaTier::avx512}));
  EXPECT_FALSE(create_gemv_q6_k_avx512(GemvDesc{Q4_K, 256, 2, IsaTier::avx512}));
  EXPECT_FALSE(create_gemv_legacy_avx512(GemvDesc{Q4_K, 256, 2, IsaTier::avx512}));
  EXPECT_FALSE(create_gemv_f16_avx512(GemvDesc{Q8_0, 64, 2, IsaTier::avx512}));
  EXPECT_FALSE(create_gemv_f16_avx512(GemvDesc{GGMLType::BF16, 0, 2, IsaTier::avx512}));
  // A prefetch distance of 0 with a hint is refused, naming the tuning.
  auto bad = create_gemv_q6_k_avx512(GemvDesc{Q6_K, 256, 2, IsaTier::avx512},
                                     {PrefetchHint::t0, 0});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.status().message().find("prefetch=t0:0"), std::string::npos)
      << bad.status().message();
  EXPECT_EQ(parse_prefetch_hint("t1").value(), PrefetchHint::t1);
  EXPECT_FALSE(parse_prefetch_hint("t3"));
}

// The fused single-phase layer and the five-phase one do the same float operations per
// element, so their outputs must be identical bit for bit, at every tier the CPU has.
TEST(MoeDecodeFused, MatchesPhasedBitForBit) {
  const CpuIsa cpu = detect_cpu_isa();
  ThreadPool pool(4);
  MoeDesc desc = desc_of({"mix", 512, 768, 12, 4, Q4_K, Q4_K, Q6_K, 0, 2}, best_isa_tier(cpu));
  const auto experts = test::random_experts(desc, 5);
  for (int64_t rows : {64, 100, 768}) {
    MoeConfig cfg;
    cfg.rows_per_task = rows;
    auto fused = MoeDecode::create(desc, cfg, cpu, MoeDecodeOptions{});
    MoeDecodeOptions phased_opt;
    phased_opt.fused = false;
    auto phased = MoeDecode::create(desc, cfg, cpu, phased_opt);
    ASSERT_TRUE(fused && phased);
    for (int64_t n_tokens : {1, 3, 8}) {
      for (RoutePattern p : {RoutePattern::spread, RoutePattern::repeated}) {
        const auto x = test::random_floats(n_tokens * desc.n_embd, 1.0f, 17 + n_tokens);
        const auto routing = test::make_routing(desc, n_tokens, p, 9 + n_tokens);
        std::vector<float> a(x.size(), NAN), b(x.size(), NAN);
        ASSERT_TRUE((*fused)->run(experts.view(), x.data(), routing.view(n_tokens), a.data(),
                                  pool).is_ok());
        ASSERT_TRUE((*phased)->run(experts.view(), x.data(), routing.view(n_tokens), b.data(),
                                   pool).is_ok());
        for (size_t i = 0; i < a.size(); ++i) {
          ASSERT_EQ(a[i], b[i]) << "rows=" << rows << " tokens=" << n_tokens << " element " << i
                                << " " << (*fused)->kernel_names();
        }
      }
    }
  }
}

}  // namespace
}  // namespace ktx::cpu
