// Conformance of the CPU linear op (runtime/cpu/linear.h) against its plain twin over a table of
// weight types and shapes, row and token tails included, on every ISA tier this CPU has.
//
// Bounds: the twin applies the same activation rounding and sums in double, so what remains is
// float reassociation inside the kernel: ~1e-6 of S = sum |w_i x_i| behind an output; bound
// 2e-5·S + 1e-6 (the f32 reference kernel sums in float too). Row ranges (row0, n_out) and
// strided inputs/outputs are the forms the engine uses for per-head slices (MLA k_b / v_b).
#include <gtest/gtest.h>

#include <cmath>

#include "common/hw/cpu_features.h"
#include "runtime/cpu/gemm_bf16.h"
#include "runtime/cpu/linear.h"
#include "test/unit/cpu/moe_test_util.h"

namespace ktx::cpu {
namespace {

struct Case {
  GGMLType type;
  int64_t k, n_rows;
};

const Case kCases[] = {
    {GGMLType::Q8_0, 96, 37},     {GGMLType::Q8_0, 512, 300},  {GGMLType::Q4_0, 128, 65},
    {GGMLType::Q4_K, 256, 129},   {GGMLType::Q4_K, 1024, 200}, {GGMLType::Q5_K, 512, 70},
    {GGMLType::Q6_K, 256, 257},   {GGMLType::Q6_K, 768, 31},   {GGMLType::BF16, 200, 33},
    {GGMLType::F16, 64, 100},     {GGMLType::F32, 100, 17},    {GGMLType::Q5_0, 64, 40},
    {GGMLType::Q2_K, 256, 20},    {GGMLType::Q3_K, 256, 24},
};
const int64_t kTokens[] = {1, 3, 16, 17, 40, 150};
// amx: calls of more than 16 tokens run the bf16 tile GEMM (row tails in the table: 37, 129,
// 200, 70, ...; token tails 17, 40, 150), the rest the GEMVs.
const IsaTier kTiers[] = {IsaTier::reference, IsaTier::avx2, IsaTier::avx512, IsaTier::amx};

// S = sum_i |w_ri x_ti| for the bound.
std::vector<double> abs_sums(const LinearDesc& d, const std::vector<uint8_t>& w,
                             const std::vector<float>& x, int64_t n_tok) {
  const size_t rb = *ggml_row_bytes(d.type, d.k);
  std::vector<double> s(static_cast<size_t>(n_tok * d.n_rows));
  std::vector<float> row(static_cast<size_t>(d.k));
  for (int64_t r = 0; r < d.n_rows; ++r) {
    dequantize_row(d.type, w.data() + r * rb, row.data(), d.k);
    for (int64_t t = 0; t < n_tok; ++t) {
      double acc = 0;
      for (int64_t i = 0; i < d.k; ++i) acc += std::fabs(static_cast<double>(row[i]) * x[t * d.k + i]);
      s[t * d.n_rows + r] = acc;
    }
  }
  return s;
}

TEST(Linear, MatchesTwinOverShapesTokensAndTiers) {
  CpuIsa cpu = detect_cpu_isa();
  if (cpu.amx_tile && !request_amx_permission()) cpu.amx_tile = cpu.amx_int8 = cpu.amx_bf16 = false;
  ThreadPool pool(3);
  int ran = 0;
  for (IsaTier tier : kTiers) {
    if (tier != IsaTier::reference && !isa_tier_supported(tier, cpu)) {
      std::printf("[ skip ] tier %s: this CPU lacks it\n", isa_tier_name(tier));
      continue;
    }
    for (const Case& c : kCases) {
      LinearDesc d{c.type, c.k, c.n_rows, tier};
      const auto w = test::random_rows(c.type, c.n_rows, c.k, 11 + static_cast<uint32_t>(c.k));
      auto lin = Linear::create(d, w.data(), cpu);
      ASSERT_TRUE(lin) << lin.status().message();
      for (int64_t n_tok : kTokens) {
        SCOPED_TRACE(d.to_string() + " kernel " + (*lin)->kernel_name() + " tokens " + std::to_string(n_tok));
        const auto x = test::random_floats(n_tok * c.k, 1.0f, 7 + static_cast<uint32_t>(n_tok));
        std::vector<float> got(n_tok * c.n_rows), want(n_tok * c.n_rows);
        (*lin)->run(pool, x.data(), n_tok, got.data());
        if ((*lin)->uses_gemm(n_tok))  // bf16 weights and activations (gemm_bf16.h)
          gemm_bf16_reference(c.type, w.data(), *ggml_row_bytes(c.type, c.k), c.k, x.data(), c.k,
                              n_tok, want.data(), c.n_rows, c.n_rows, (*lin)->prefill_precision());
        else
          linear_reference(d, w.data(), (*lin)->act_format(), x.data(), c.k, n_tok, want.data(), c.n_rows);
        const auto s = abs_sums(d, w, x, n_tok);
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_NEAR(got[i], want[i], 2e-5 * s[i] + 1e-6) << "output " << i;
        ++ran;
      }
    }
  }
  EXPECT_GT(ran, 0);
}

// A row range with strided input and output: the per-head slices of the MLA projections.
TEST(Linear, RowRangeWithStrides) {
  const CpuIsa cpu = detect_cpu_isa();
  ThreadPool pool(2);
  const LinearDesc d{GGMLType::Q8_0, 64, 96, best_isa_tier(cpu)};
  const auto w = test::random_rows(d.type, d.n_rows, d.k, 5);
  auto lin = Linear::create(d, w.data(), cpu);
  ASSERT_TRUE(lin) << lin.status().message();
  const int64_t n_tok = 5, ld_x = 100, ld_dst = 50, row0 = 30, n_out = 41;
  const auto x = test::random_floats(n_tok * ld_x, 1.0f, 9);
  std::vector<float> got(n_tok * ld_dst, -7.0f), full(n_tok * d.n_rows);
  (*lin)->run(pool, x.data(), ld_x, n_tok, got.data(), ld_dst, row0, n_out);
  linear_reference(d, w.data(), (*lin)->act_format(), x.data(), ld_x, n_tok, full.data(), d.n_rows);
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int64_t r = 0; r < n_out; ++r)
      EXPECT_NEAR(got[t * ld_dst + r], full[t * d.n_rows + row0 + r], 1e-4) << t << "," << r;
    for (int64_t r = n_out; r < ld_dst; ++r) EXPECT_EQ(got[t * ld_dst + r], -7.0f) << "wrote past n_out";
  }
}

// The per-head form equals one row-range call per head (MLA's k_b: 128-element rows).
TEST(Linear, HeadsEqualPerHeadCalls) {
  const CpuIsa cpu = detect_cpu_isa();
  ThreadPool pool(3);
  for (GGMLType type : {GGMLType::Q8_0, GGMLType::F16, GGMLType::Q4_K, GGMLType::F32}) {
    const int64_t n_heads = 5, head_rows = 24, k = type == GGMLType::Q4_K ? 256 : 128;
    // The GEMV tiers: run_heads has no prefill GEMM, the per-head calls would use it at amx.
    const LinearDesc d{type, k, n_heads * head_rows, std::min(best_isa_tier(cpu), IsaTier::avx512)};
    const auto w = test::random_rows(type, d.n_rows, k, 31);
    auto lin = Linear::create(d, w.data(), cpu);
    ASSERT_TRUE(lin) << lin.status().message();
    const int64_t n_tok = 19, x_head = k + 8, ld_x = n_heads * x_head, ld_dst = n_heads * head_rows;
    const auto x = test::random_floats(n_tok * ld_x, 1.0f, 3);
    std::vector<float> got(n_tok * ld_dst), want(n_tok * ld_dst);
    (*lin)->run_heads(pool, n_heads, head_rows, x.data(), x_head, ld_x, n_tok, got.data(),
                      head_rows, ld_dst);
    for (int64_t h = 0; h < n_heads; ++h)
      (*lin)->run(pool, x.data() + h * x_head, ld_x, n_tok, want.data() + h * head_rows, ld_dst,
                  h * head_rows, head_rows);
    EXPECT_EQ(got, want) << (*lin)->kernel_name();
  }
}

// A token's output does not depend on how many tokens share the call or on the pool size
// (GEMV tiers; at amx a batch of more than 16 runs the GEMM, which agrees to float rounding:
// the conformance table bounds it).
TEST(Linear, TokenResultIndependentOfBatchAndThreads) {
  const CpuIsa cpu = detect_cpu_isa();
  const LinearDesc d{GGMLType::Q4_K, 512, 333, std::min(best_isa_tier(cpu), IsaTier::avx512)};
  const auto w = test::random_rows(d.type, d.n_rows, d.k, 21);
  auto lin = Linear::create(d, w.data(), cpu);
  ASSERT_TRUE(lin) << lin.status().message();
  const int64_t n_tok = 37;
  const auto x = test::random_floats(n_tok * d.k, 1.0f, 4);
  ThreadPool p1(1), p4(4);
  std::vector<float> batch(n_tok * d.n_rows), one(d.n_rows);
  (*lin)->run(p4, x.data(), n_tok, batch.data());
  for (int64_t t : {0L, 16L, 36L}) {
    (*lin)->run(p1, x.data() + t * d.k, 1, one.data());
    for (int64_t r = 0; r < d.n_rows; ++r) ASSERT_EQ(one[r], batch[t * d.n_rows + r]) << t << "," << r;
  }
}

// The Q5_0 -> Q8_0 repack keeps every value: dequantized rows are bit-identical.
TEST(Linear, Q5_0RepackIsExact) {
  const int64_t rows = 7, k = 128;
  auto w = test::random_rows(GGMLType::Q5_0, rows, k, 77);
  const auto q8 = repack_q5_0_to_q8_0(w.data(), rows, k);
  const size_t rb5 = *ggml_row_bytes(GGMLType::Q5_0, k), rb8 = *ggml_row_bytes(GGMLType::Q8_0, k);
  std::vector<float> a(k), b(k);
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(GGMLType::Q5_0, w.data() + r * rb5, a.data(), k);
    dequantize_row(GGMLType::Q8_0, q8.data() + r * rb8, b.data(), k);
    for (int64_t i = 0; i < k; ++i) ASSERT_EQ(a[i], b[i]) << r << "," << i;
  }
  const CpuIsa cpu = detect_cpu_isa();
  if (!isa_tier_supported(IsaTier::avx2, cpu)) GTEST_SKIP() << "no avx2: Q5_0 runs the reference";
  auto lin = Linear::create({GGMLType::Q5_0, k, rows, IsaTier::avx2}, w.data(), cpu);
  ASSERT_TRUE(lin) << lin.status().message();
  EXPECT_EQ((*lin)->repacked_bytes(), q8.size());
  EXPECT_EQ((*lin)->kernel_name().find("gemv_ref"), std::string::npos) << (*lin)->kernel_name();
}

TEST(Linear, RejectsBadDescriptors) {
  const CpuIsa cpu = detect_cpu_isa();
  std::vector<uint8_t> w(4096);
  auto a = Linear::create({GGMLType::Q4_K, 100, 4, IsaTier::reference}, w.data(), cpu);
  ASSERT_FALSE(a);
  EXPECT_NE(a.status().message().find("linear:type=Q4_K,k=100"), std::string::npos) << a.status().message();
  auto b = Linear::create({GGMLType::Q8_0, 0, 4, IsaTier::reference}, w.data(), cpu);
  EXPECT_FALSE(b);
  CpuIsa none;
  auto c = Linear::create({GGMLType::Q8_0, 64, 4, IsaTier::avx2}, w.data(), none);
  ASSERT_FALSE(c);
  EXPECT_NE(c.status().message().find("lacks the avx2 tier"), std::string::npos) << c.status().message();
}

}  // namespace
}  // namespace ktx::cpu
