// The bf16 prefill GEMM (runtime/cpu/gemm_bf16.h) against its plain twin: the vector
// dequantizers give the twin's bits, and the tile GEMM its sums to float rounding, over a table
// of types and shapes with row tails (not a multiple of 32, more than one 128-row task), token
// tails (not a multiple of 32, more than one 256-token task) and K tails (slabs of 512 plus a
// remainder). Skips where the CPU lacks AMX-BF16 (the twin still runs in the engine's
// reference paths, tested elsewhere).
//
// Bound: the twin sums the same bf16 products in double; the kernel in float over K, so
// |got − want| <= 1e-5·S + 1e-6 with S = Σ|w x| (float rounding of a K-long chain, K <= 2048).
#include <gtest/gtest.h>

#include <cmath>

#include "common/hw/cpu_features.h"
#include "runtime/cpu/gemm_bf16.h"
#include "test/unit/cpu/moe_test_util.h"

namespace ktx::cpu {
namespace {

bool have_amx_bf16() {
  const CpuIsa cpu = detect_cpu_isa();
  if (gemm_bf16_available(cpu)) return true;
  std::printf("[ skip ] this CPU (or OS) lacks AMX-BF16 / AVX512-BF16\n");
  return false;
}

TEST(GemmBf16, RoundingFlushesSubnormalsAndRoundsToNearestEven) {
  EXPECT_EQ(round_bf16(1.0f), 0x3F80);
  EXPECT_EQ(round_bf16(1.00390625f), 0x3F80);   // halfway, even below
  EXPECT_EQ(round_bf16(1.01171875f), 0x3F82);   // halfway, even above
  EXPECT_EQ(round_bf16(-1e-40f), 0x8000);       // subnormal -> signed zero
  EXPECT_EQ(round_bf16(1e-40f), 0x0000);
}

TEST(GemmBf16, VectorDequantIsBitExact) {
  if (!have_amx_bf16()) GTEST_SKIP() << "no AMX-BF16";
  for (GGMLType type : {GGMLType::Q4_K, GGMLType::Q5_K, GGMLType::Q6_K, GGMLType::Q8_0,
                        GGMLType::F16, GGMLType::BF16, GGMLType::F32, GGMLType::Q4_0, GGMLType::Q3_K}) {
    const int64_t rows = 5, k = 1024;
    const auto w = test::random_rows(type, rows, k, 3 + static_cast<uint32_t>(type));
    const size_t rb = *ggml_row_bytes(type, k);
    for (int64_t k0 : {0L, 256L, 512L}) {
      const int64_t n = k - k0 >= 512 ? 512 : k - k0;
      std::vector<uint16_t> a(rows * 600, 1), b(rows * 600, 2);
      dequant_rows_bf16(type, w.data(), rb, rows, k0, n, a.data(), 600, true);
      dequant_rows_bf16(type, w.data(), rb, rows, k0, n, b.data(), 600, false);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(a[r * 600 + i], b[r * 600 + i]) << ggml_type_name(static_cast<uint32_t>(type)) << " k0 " << k0 << " r " << r << " i " << i;
      std::vector<float> f(k);
      dequantize_row(type, w.data(), f.data(), k);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(b[i], round_bf16(f[k0 + i])) << i;
    }
  }
}

struct Shape {
  GGMLType type;
  int64_t k, n_out;
};

const Shape kShapes[] = {
    {GGMLType::Q4_K, 256, 33},   {GGMLType::Q4_K, 768, 300},  {GGMLType::Q6_K, 1536, 100},
    {GGMLType::Q5_K, 512, 64},   {GGMLType::Q8_0, 96, 17},    {GGMLType::Q8_0, 544, 129},
    {GGMLType::F16, 64, 40},     {GGMLType::BF16, 2048, 31},  {GGMLType::F32, 160, 70},
    {GGMLType::Q4_0, 128, 257},  {GGMLType::Q2_K, 256, 48},
};
const int64_t kTokens[] = {17, 32, 45, 300};

TEST(GemmBf16, MatchesTwinOverShapes) {
  if (!have_amx_bf16()) GTEST_SKIP() << "no AMX-BF16";
  ThreadPool pool(3);
  for (const Shape& sh : kShapes) {
    const auto w = test::random_rows(sh.type, sh.n_out, sh.k, 41 + static_cast<uint32_t>(sh.k));
    const size_t rb = *ggml_row_bytes(sh.type, sh.k);
    std::vector<float> wf(sh.n_out * sh.k);
    for (int64_t r = 0; r < sh.n_out; ++r) dequantize_row(sh.type, w.data() + r * rb, wf.data() + r * sh.k, sh.k);
    for (int64_t n_tok : kTokens) for (Bf16Precision prec : {Bf16Precision::bf16, Bf16Precision::bf16x3}) {
      SCOPED_TRACE(ggml_type_name(static_cast<uint32_t>(sh.type)) + " k " + std::to_string(sh.k) +
                   " rows " + std::to_string(sh.n_out) + " tokens " + std::to_string(n_tok) +
                   " " + bf16_precision_name(prec));
      const int64_t ld_x = sh.k + 3, ld_dst = sh.n_out + 5;
      const auto x = test::random_floats(n_tok * ld_x, 1.0f, 9 + static_cast<uint32_t>(n_tok));
      std::vector<float> got(n_tok * ld_dst, -3.0f), want(n_tok * ld_dst, -3.0f);
      gemm_bf16_run(pool, sh.type, w.data(), rb, sh.k, x.data(), ld_x, n_tok, got.data(), ld_dst, sh.n_out, prec);
      gemm_bf16_reference(sh.type, w.data(), rb, sh.k, x.data(), ld_x, n_tok, want.data(), ld_dst, sh.n_out, prec);
      for (int64_t t = 0; t < n_tok; ++t) {
        for (int64_t r = 0; r < sh.n_out; ++r) {
          double s = 0;
          for (int64_t i = 0; i < sh.k; ++i) s += std::fabs(double(wf[r * sh.k + i]) * x[t * ld_x + i]);
          ASSERT_NEAR(got[t * ld_dst + r], want[t * ld_dst + r], 1e-5 * s + 1e-6) << t << "," << r;
        }
        for (int64_t r = sh.n_out; r < ld_dst; ++r) ASSERT_EQ(got[t * ld_dst + r], -3.0f) << "wrote past n_out";
      }
    }
  }
}

// A token's outputs are the same bits whatever batch it came in and whatever the pool size.
TEST(GemmBf16, TokenResultIndependentOfBatchAndThreads) {
  if (!have_amx_bf16()) GTEST_SKIP() << "no AMX-BF16";
  const GGMLType type = GGMLType::Q4_K;
  const int64_t k = 1280, n_out = 150;
  const auto w = test::random_rows(type, n_out, k, 8);
  const size_t rb = *ggml_row_bytes(type, k);
  const auto x = test::random_floats(300 * k, 1.0f, 12);
  ThreadPool p1(1), p3(3);
  std::vector<float> big(300 * n_out), small(20 * n_out);
  gemm_bf16_run(p3, type, w.data(), rb, k, x.data(), k, 300, big.data(), n_out, n_out, Bf16Precision::bf16x3);
  gemm_bf16_run(p1, type, w.data(), rb, k, x.data() + 270 * k, k, 20, small.data(), n_out, n_out, Bf16Precision::bf16x3);
  for (int64_t t = 0; t < 20; ++t)
    for (int64_t r = 0; r < n_out; ++r)
      ASSERT_EQ(small[t * n_out + r], big[(270 + t) * n_out + r]) << t << "," << r;
}

}  // namespace
}  // namespace ktx::cpu
