// Descriptors, configs, dispatch and the pool: the parts of runtime/cpu that must reject bad
// input with a message naming what was wrong, and must pick kernels in a fixed order.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "common/hw/cpu_features.h"
#include "runtime/cpu/jit/gemv.h"
#include "runtime/cpu/moe_decode.h"
#include "runtime/cpu/thread_pool.h"
#include "test/unit/cpu/moe_test_util.h"

namespace ktx::cpu {
namespace {

MoeDesc deepseek_desc() {
  return test::moe_desc(7168, 2048, 256, 8, GGMLType::Q4_K, GGMLType::Q4_K, GGMLType::Q6_K, 16,
                        IsaTier::avx2);
}

TEST(MoeDesc, StringRoundTrip) {
  const MoeDesc d = deepseek_desc();
  EXPECT_EQ(d.to_string(),
            "moe:n_embd=7168,n_ff=2048,n_expert=256,top_k=8,gate=Q4_K,up=Q4_K,down=Q6_K,"
            "max_tokens=16,isa=avx2");
  auto back = MoeDesc::parse(d.to_string());
  ASSERT_TRUE(back) << back.status().message();
  EXPECT_EQ(*back, d);

  const MoeConfig c = select_moe_config(d, 16);
  auto cback = MoeConfig::parse(c.to_string());
  ASSERT_TRUE(cback) << cback.status().message();
  EXPECT_EQ(*cback, c);
}

TEST(MoeDesc, ParseRejectsWithNames) {
  const std::string good = deepseek_desc().to_string();
  struct Bad { std::string text, expect; };
  const Bad bads[] = {
      {"cfg:" + good.substr(4), "expected it to start with 'moe:'"},
      {good + ",extra=1", "unknown key 'extra'"},
      {good + ",top_k=8", "key 'top_k' appears twice"},
      {"moe:n_embd=7168", "missing key 'n_ff'"},
      {std::string(good).replace(good.find("7168"), 4, "7x68"), "expected an integer, found '7x68'"},
      {std::string(good).replace(good.find("Q6_K"), 4, "Q9_K"), "unknown GGML type name 'Q9_K'"},
      {std::string(good).replace(good.find("avx2"), 4, "sse2"), "unknown ISA tier 'sse2'"},
      {std::string(good).replace(good.find("top_k=8"), 7, "top_k=300"), "top_k=300 exceeds"},
      {std::string(good).replace(good.find("n_ff=2048"), 9, "n_ff=100"), "down"},
  };
  for (const Bad& b : bads) {
    auto r = MoeDesc::parse(b.text);
    ASSERT_FALSE(r) << b.text;
    EXPECT_NE(r.status().message().find(b.expect), std::string::npos)
        << "message: " << r.status().message() << "\nexpected to contain: " << b.expect;
  }
  auto cfg = MoeConfig::parse("cfg:rows_per_task=0,unroll=2,threads=0");
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.status().message().find("rows_per_task=0"), std::string::npos);
  cfg = MoeConfig::parse("cfg:rows_per_task=8,unroll=9,threads=0");
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.status().message().find("unroll=9"), std::string::npos);
  cfg = MoeConfig::parse("cfg:rows_per_task=8,unroll=2,threads=0,act=i4");
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.status().message().find("expected i8 or i16, found 'i4'"), std::string::npos)
      << cfg.status().message();
}

// The int8 prefill activations appear in the config string only when chosen (int16 configs
// keep their strings); "act=i16" parses to the default.
TEST(MoeDesc, ConfigPrefillActivations) {
  MoeConfig c;
  EXPECT_EQ(c.to_string(), "cfg:rows_per_task=64,unroll=2,threads=0");
  c.prefill_act = 8;
  EXPECT_EQ(c.to_string(), "cfg:rows_per_task=64,unroll=2,threads=0,act=i8");
  auto back = MoeConfig::parse(c.to_string());
  ASSERT_TRUE(back) << back.status().message();
  EXPECT_EQ(*back, c);
  auto i16 = MoeConfig::parse("cfg:rows_per_task=64,unroll=2,threads=0,act=i16");
  ASSERT_TRUE(i16) << i16.status().message();
  EXPECT_EQ(i16->prefill_act, 16);
}

TEST(LinearDesc, StringRoundTripAndErrors) {
  const LinearDesc d{GGMLType::Q4_K, 7168, 1536, IsaTier::amx};
  EXPECT_EQ(d.to_string(), "linear:type=Q4_K,k=7168,n_rows=1536,isa=amx");
  auto back = LinearDesc::parse(d.to_string());
  ASSERT_TRUE(back) << back.status().message();
  EXPECT_EQ(*back, d);
  const struct { const char* text; const char* error; } bad[] = {
      {"moe:type=Q4_K,k=256,n_rows=1,isa=amx", "expected it to start with 'linear:'"},
      {"linear:type=Q4_K,k=256,isa=amx", "missing key 'n_rows'"},
      {"linear:type=Q4_K,k=256,n_rows=1,isa=amx,x=1", "unknown key 'x'"},
      {"linear:type=Q9_K,k=256,n_rows=1,isa=amx", "unknown GGML type name 'Q9_K'"},
      {"linear:type=Q4_K,k=100,n_rows=1,isa=amx", "rows of 100 elements"},
      {"linear:type=Q4_K,k=256,n_rows=0,isa=amx", "both must be positive"},
      {"linear:type=Q4_K,k=256,n_rows=1,isa=sse", "unknown ISA tier 'sse'"},
  };
  for (const auto& b : bad) {
    auto r = LinearDesc::parse(b.text);
    ASSERT_FALSE(r) << b.text;
    EXPECT_NE(r.status().message().find(b.error), std::string::npos)
        << b.text << " -> " << r.status().message();
  }
}

TEST(MoeDesc, UnsupportedWeightTypeNamed) {
  MoeDesc d = deepseek_desc();
  d.down_type = GGMLType::IQ4_XS;
  const Status st = d.validate();
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("down weights"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("IQ4_XS"), std::string::npos) << st.message();
}

TEST(MoeDesc, ConfigKeepsThreadsBusy) {
  const MoeDesc d = deepseek_desc();
  for (int threads : {1, 4, 16, 64}) {
    const MoeConfig c = select_moe_config(d, threads);
    EXPECT_TRUE(c.validate().is_ok()) << c.to_string();
    EXPECT_GE(c.rows_per_task, 8);
    // At one token, top_k experts' rows must split into at least `threads` tasks, in both
    // the gate/up phase (n_ff rows) and the down phase (n_embd rows).
    for (int64_t rows : {d.n_ff, d.n_embd}) {
      const int64_t tasks = d.top_k * ((rows + c.rows_per_task - 1) / c.rows_per_task);
      EXPECT_GE(tasks, threads) << c.to_string() << " rows " << rows;
    }
  }
}

TEST(GemvDispatch, ReferenceIsLastAndTierCapsTheChoice) {
  const auto& impls = gemv_impls();
  ASSERT_FALSE(impls.empty());
  EXPECT_STREQ(impls.back().name, "reference");
  const CpuIsa cpu = detect_cpu_isa();
  // A plan that allows only the reference tier gets the reference, whatever the CPU has.
  auto ref = make_gemv({GGMLType::Q4_K, 256, 1, IsaTier::reference}, cpu);
  ASSERT_TRUE(ref) << ref.status().message();
  EXPECT_EQ((*ref)->name(), "gemv_ref_Q4_K");
  EXPECT_EQ((*ref)->act_format(), ActFormat::f32);
  // Types without a generated kernel fall through to the reference at any tier.
  auto q2 = make_gemv({GGMLType::Q2_K, 256, 1, IsaTier::amx}, cpu);
  ASSERT_TRUE(q2) << q2.status().message();
  EXPECT_EQ((*q2)->name(), "gemv_ref_Q2_K");
}

TEST(GemvDispatch, Avx2KernelsChosenWhereSupported) {
  const CpuIsa cpu = detect_cpu_isa();
  if (!isa_tier_supported(IsaTier::avx2, cpu)) {
    GTEST_SKIP() << "this CPU lacks AVX2+FMA+F16C: the generated kernels cannot run here";
  }
  auto q4k = make_gemv({GGMLType::Q4_K, 512, 2, IsaTier::avx2}, cpu);
  ASSERT_TRUE(q4k) << q4k.status().message();
  EXPECT_EQ((*q4k)->name(), "gemv_q4_k_avx2");
  EXPECT_EQ((*q4k)->act_format(), ActFormat::q16_k);
  EXPECT_FALSE((*q4k)->code().empty());
  auto q80 = make_gemv({GGMLType::Q8_0, 96, 3, IsaTier::avx2}, cpu);
  ASSERT_TRUE(q80) << q80.status().message();
  EXPECT_EQ((*q80)->name(), "gemv_q8_0_avx2_u3");
  EXPECT_EQ((*q80)->act_format(), ActFormat::q16_0);
  // BF16 / F16 rows of any length read f32 activations in place.
  for (GGMLType type : {GGMLType::BF16, GGMLType::F16}) {
    auto half = make_gemv({type, 100, 2, IsaTier::avx2}, cpu);
    ASSERT_TRUE(half) << half.status().message();
    EXPECT_EQ((*half)->name(), type == GGMLType::BF16 ? "gemv_bf16_avx2" : "gemv_f16_avx2");
    EXPECT_EQ((*half)->act_format(), ActFormat::f32);
  }
  // An avx512 cap takes the avx512 kernel where the CPU has the tier, else falls to AVX2.
  auto q40 = make_gemv({GGMLType::Q4_0, 64, 2, IsaTier::avx512}, cpu);
  ASSERT_TRUE(q40) << q40.status().message();
  EXPECT_EQ((*q40)->name(), isa_tier_supported(IsaTier::avx512, cpu) ? "gemv_q4_0_avx512"
                                                                       : "gemv_q4_0_avx2_u2");
}

TEST(GemvDispatch, RejectsBadRowLength) {
  auto r = make_gemv({GGMLType::Q4_K, 100, 1, IsaTier::avx2}, detect_cpu_isa());
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("k=100"), std::string::npos) << r.status().message();
}

TEST(MoeRouting, OutOfRangeExpertNamesTokenAndSlot) {
  MoeDesc d = deepseek_desc();
  d.n_expert = 4;
  d.top_k = 2;
  const std::vector<int32_t> ids = {0, 1, 3, 4};
  const std::vector<float> w = {0.5f, 0.5f, 0.5f, 0.5f};
  const Status st = check_routing(d, {2, ids.data(), w.data()});
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("token 1 slot 1: expert 4 out of range [0, 4)"), std::string::npos)
      << st.message();
}

TEST(ThreadPool, RunsEveryTaskOnceAcrossManyJobs) {
  ThreadPool pool(4, 100);
  for (int64_t n : {0, 1, 2, 7, 1000}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    for (int job = 0; job < 20; ++job) {
      pool.parallel_for(n, [&](int64_t t) { hits[t].fetch_add(1); });
    }
    for (int64_t t = 0; t < n; ++t) EXPECT_EQ(hits[t].load(), 20) << "task " << t << " of " << n;
  }
}

}  // namespace
}  // namespace ktx::cpu
