// The GPU kernel families (runtime/cuda/kernels) against plain float references: NVRTC
// compiles every family for the archs plans target (no device needed: this runs in CI), and
// on a machine with a GPU each op runs over a table of shapes with tails (rows not a multiple
// of the 4 rows per block, K with a partial last warp pass, 1..8 tokens) and must match.
//
// Bounds: the GEMV's weights decode to dequantize_row's values (same float operations); the
// sums run in another order, so |got − want| <= 1e-5·S + 1e-6 with S = Σ|w x| (want in double).
// The integer GEMVs compare the same way against x rounded as ktx_quantize_x16 rounds it.
// RMSNorm and the element-wise ops: 1e-5 relative.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <utility>

#include "common/cuda/cuda_sources.h"
#include "common/cuda/nvrtc.h"
#include "common/quant/quant.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/library.h"
#include "test/unit/cuda/attn_test_util.h"
#include "test/unit/cuda/gpu_test_util.h"

namespace ktx::cuda {
namespace {

using gpu_test::open_gpu;
using gpu_test::random_floats;
using attn_test::make_weight;

// Σ w·x in float64 and Σ |w·x| (the scale of the float bound), k elements.
template <typename T>
std::pair<double, double> ref_dot(const float* w, const T* x, int64_t k) {
  double s = 0, sa = 0;
  for (int64_t i = 0; i < k; ++i) {
    const double p = double(w[i]) * double(x[i]);
    s += p;
    sa += std::fabs(p);
  }
  return {s, sa};
}

TEST(CudaKernels, NvrtcCompilesEveryFamilyForPlanArchs) {
  for (const char* arch : {"sm_80", "sm_89", "sm_90a"}) {
    auto cubin = compile_kernels(arch);
    ASSERT_TRUE(cubin) << cubin.status().message();
    EXPECT_GT(cubin->size(), 1000u) << arch;
  }
  auto bad = compile_kernels("sm_1");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.status().message().find("sm_1"), std::string::npos) << bad.status().message();
}

// Launches may carry the programmatic-serialization attribute (KTX_CUDA_PDL), which lets a
// kernel start while the one before it runs: every entry point must then wait for its
// predecessors before it touches memory. Checked on the sources: the first statement of every
// __global__ body is KTX_PDL_ENTER().
TEST(CudaKernels, EveryEntryPointWaitsForItsPredecessorsFirst) {
  int entries = 0;
  for (const KernelSource& src : kKernelSources) {
    const std::string text = src.text;
    for (size_t at = text.find("__global__"); at != std::string::npos; at = text.find("__global__", at + 1)) {
      const size_t line = text.rfind('\n', at) + 1;
      if (text.compare(text.find_first_not_of(" ", line), 2, "//") == 0) continue;  // a comment
      const size_t open = text.find('{', at);
      ASSERT_NE(open, std::string::npos) << src.path;
      size_t first = text.find_first_not_of(" \t\\\n", open + 1);
      while (text.compare(first, 2, "//") == 0)  // a comment after the brace
        first = text.find_first_not_of(" \t\\\n", text.find('\n', first));
      EXPECT_EQ(text.compare(first, 16, "KTX_PDL_ENTER();"), 0)
          << src.path << ": the entry point at offset " << at << " does not start with KTX_PDL_ENTER()";
      ++entries;
    }
  }
  EXPECT_GE(entries, 20);
}

TEST(CudaKernels, ErrorsNameTheCallAndPlace) {
  auto f = []() -> Status {
    KTX_CUDA_RETURN_IF_ERROR(cudaSetDevice(1 << 20));
    return Status::ok();
  };
  const Status st = f();
  ASSERT_FALSE(st);
  EXPECT_NE(st.message().find("cudaSetDevice(1 << 20) failed"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("test_cuda_kernels.cpp:"), std::string::npos) << st.message();
  auto empty = Library::load({});
  EXPECT_FALSE(empty);
}


template <typename T>
DeviceBuffer upload(const std::vector<T>& v) {
  auto b = DeviceBuffer::alloc(std::max<size_t>(1, v.size() * sizeof(T)));
  EXPECT_TRUE(b) << b.status().message();
  EXPECT_TRUE(b->upload(v.data(), v.size() * sizeof(T)));
  return std::move(*b);
}

TEST(CudaKernels, GemvMatchesReferenceOverTypesShapesTokens) {
  KTX_NEED_GPU(g);
  struct Case { GGMLType type; int64_t k, rows; };
  const Case cases[] = {
      {GGMLType::Q4_K, 256, 5},   {GGMLType::Q4_K, 7168, 37}, {GGMLType::Q4_K, 18432, 9},
      {GGMLType::Q5_K, 1536, 9},  {GGMLType::Q5_K, 256, 1},   {GGMLType::Q6_K, 2048, 66},
      {GGMLType::Q6_K, 256, 3},   {GGMLType::Q8_0, 96, 3},    {GGMLType::Q8_0, 1056, 130},
      {GGMLType::Q8_0, 32, 1},    {GGMLType::Q4_0, 512, 7},   {GGMLType::Q5_0, 128, 70},
      {GGMLType::F16, 160, 11},   {GGMLType::BF16, 64, 4},    {GGMLType::F32, 2080, 17},
      // k >= 4096 with few rows: the split-k variant (uneven shares of blocks per warp).
      {GGMLType::Q5_K, 4352, 3},  {GGMLType::Q6_K, 4608, 5},  {GGMLType::Q8_0, 4128, 7},
  };
  auto xq = XQuant::alloc(18432);
  ASSERT_TRUE(xq) << xq.status().message();
  for (const Case& c : cases) {
    const auto w = make_weight(c.type, c.k, c.rows, 0.05f, 7 + static_cast<uint32_t>(c.k));
    // The float path (every weight decoded), then the integer path where the type has one.
    for (const bool integer : {false, true}) {
      if (integer && !gemv16_supported(c.type)) continue;
      for (int64_t n_tok : {1, 2, 3, 5, 8}) {
        SCOPED_TRACE(std::string(ggml_type_name(static_cast<uint32_t>(c.type))) + " k " +
                     std::to_string(c.k) + " rows " + std::to_string(c.rows) + " tokens " +
                     std::to_string(n_tok) + (integer ? " int16 x" : " float x"));
        const int64_t ld_x = c.k + 7, ld_y = c.rows + 3;
        const auto x = random_floats(static_cast<size_t>(n_tok * ld_x), 1.0f, 3 + static_cast<uint32_t>(n_tok));
        auto dx = upload(x);
        std::vector<float> y(static_cast<size_t>(n_tok * ld_y), -5.0f);
        auto dy = upload(y);
        ASSERT_TRUE(g->k.gemv(c.type, w.dev.get(), w.row_bytes, dx.as<float>(), ld_x,
                              dy.as<float>(), ld_y, c.rows, c.k, n_tok, nullptr,
                              integer ? &*xq : nullptr));
        ASSERT_TRUE(dy.download(y.data(), y.size() * sizeof(float)));
        for (int64_t t = 0; t < n_tok; ++t) {
          // The integer path multiplies the weights with x rounded by ktx_quantize_x16: the
          // same float bound against that x.
          std::vector<double> xt(x.begin() + t * ld_x, x.begin() + t * ld_x + c.k);
          if (integer) xt = gpu_test::x16_rounded(x.data() + t * ld_x, c.k);
          for (int64_t r = 0; r < ld_y; ++r) {
            if (r >= c.rows) {
              ASSERT_EQ(y[t * ld_y + r], -5.0f) << "wrote past n_rows";
              continue;
            }
            const auto [s, sa] = ref_dot(w.row(r), xt.data(), c.k);
            ASSERT_NEAR(y[t * ld_y + r], s, 1e-5 * sa + 1e-6) << "token " << t << " row " << r;
          }
        }
      }
    }
  }
  auto bad = g->k.gemv(GGMLType::Q4_K, nullptr, 144, nullptr, 256, nullptr, 1, 1, 100, 1);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.message().find("k = 100"), std::string::npos) << bad.message();
  // The integer GEMV refuses rows its 16-byte loads cannot read (gemv falls back to float).
  auto misaligned = g->k.gemv16(GGMLType::Q4_K, reinterpret_cast<const void*>(uintptr_t{2}), 144,
                                *xq, nullptr, 1, 1, 256, 1);
  ASSERT_FALSE(misaligned);
  EXPECT_NE(misaligned.message().find("not aligned"), std::string::npos) << misaligned.message();
  auto too_long = g->k.quantize_x(nullptr, 1, 18464, 1, *xq);
  ASSERT_FALSE(too_long);
  EXPECT_NE(too_long.message().find("18464"), std::string::npos) << too_long.message();
}

// The GEMM tests' shapes: every type, row tails (not whole 128-row tiles), token tails (not
// whole 64-token tiles, and fewer than one).
struct GemmCase { GGMLType type; int64_t k, rows, n_tok; };
constexpr GemmCase kGemmCases[] = {
    {GGMLType::Q4_K, 512, 130, 70}, {GGMLType::Q4_K, 256, 5, 1},   {GGMLType::Q5_K, 768, 128, 64},
    {GGMLType::Q6_K, 256, 257, 65}, {GGMLType::Q8_0, 96, 3, 130},  {GGMLType::Q4_0, 64, 200, 17},
    {GGMLType::Q5_0, 128, 33, 9},   {GGMLType::F16, 160, 11, 40},  {GGMLType::BF16, 64, 129, 3},
    {GGMLType::F32, 32, 1, 200},
};

// The prefill GEMM (gemm/kernel.cuh) against float64 sums of the dequantized weights: every
// type, row tails (not whole 128-row tiles), token tails (not whole 64-token tiles, and fewer
// than one), strided x and y; nothing written past n_rows or n_tok. Then Kernels::linear takes
// the GEMM from kGemmMinTokens tokens and agrees with the GEMVs below it.
TEST(CudaKernels, GemmMatchesReferenceOverTypesShapesTokens) {
  KTX_NEED_GPU(g);
  if (!g->k.has_gemm(GGMLType::Q4_K)) GTEST_SKIP() << "no GEMM family in this build's code";
  g->k.set_mma(false);  // the exact float GEMM (its tensor-core form: the next test)
  for (const GemmCase& c : kGemmCases) {
    SCOPED_TRACE(std::string(ggml_type_name(static_cast<uint32_t>(c.type))) + " k " +
                 std::to_string(c.k) + " rows " + std::to_string(c.rows) + " tokens " +
                 std::to_string(c.n_tok));
    const auto w = make_weight(c.type, c.k, c.rows, 0.05f, 11 + static_cast<uint32_t>(c.rows));
    const int64_t ld_x = c.k + 5, ld_y = c.rows + 3, tok_cap = c.n_tok + 2;
    const auto x = random_floats(static_cast<size_t>(tok_cap * ld_x), 1.0f, 5 + static_cast<uint32_t>(c.k));
    auto dx = upload(x);
    std::vector<float> y(static_cast<size_t>(tok_cap * ld_y), -5.0f);
    auto dy = upload(y);
    ASSERT_TRUE(g->k.gemm(c.type, w.dev.get(), w.row_bytes, dx.as<float>(), ld_x,
                          dy.as<float>(), ld_y, c.rows, c.k, c.n_tok));
    ASSERT_TRUE(dy.download(y.data(), y.size() * sizeof(float)));
    for (int64_t t = 0; t < tok_cap; ++t) {
      for (int64_t r = 0; r < ld_y; ++r) {
        if (r >= c.rows || t >= c.n_tok) {
          ASSERT_EQ(y[t * ld_y + r], -5.0f) << "wrote past n_rows or n_tok: token " << t << " row " << r;
          continue;
        }
        const auto [s, sa] = ref_dot(w.row(r), x.data() + t * ld_x, c.k);
        ASSERT_NEAR(y[t * ld_y + r], s, 1e-5 * sa + 1e-6) << "token " << t << " row " << r;
      }
    }
  }
  // linear(): GEMVs below kGemmMinTokens, the GEMM from it; both are the float product.
  const int64_t k = 512, rows = 70;
  const auto w = make_weight(GGMLType::Q4_K, k, rows, 0.05f, 99);
  for (int64_t n_tok : {kGemmMinTokens - 1, kGemmMinTokens}) {
    const auto x = random_floats(static_cast<size_t>(n_tok * k), 1.0f, 17);
    auto dx = upload(x);
    std::vector<float> a(static_cast<size_t>(n_tok * rows)), b(a.size());
    auto dy = upload(a);
    ASSERT_TRUE(g->k.linear(GGMLType::Q4_K, w.dev.get(), w.row_bytes, dx.as<float>(), k,
                            dy.as<float>(), rows, rows, k, n_tok));
    ASSERT_TRUE(dy.download(a.data(), a.size() * sizeof(float)));
    for (int64_t t0 = 0; t0 < n_tok; t0 += kGemvMaxTokens)
      ASSERT_TRUE(g->k.gemv(GGMLType::Q4_K, w.dev.get(), w.row_bytes, dx.as<float>() + t0 * k,
                            k, dy.as<float>() + t0 * rows, rows, rows, k,
                            std::min<int64_t>(kGemvMaxTokens, n_tok - t0)));
    ASSERT_TRUE(dy.download(b.data(), b.size() * sizeof(float)));
    for (size_t i = 0; i < a.size(); ++i) {
      if (n_tok < kGemmMinTokens) ASSERT_EQ(a[i], b[i]) << "below kGemmMinTokens linear is the GEMV";
      else ASSERT_NEAR(a[i], b[i], 1e-4 * (std::fabs(b[i]) + 1.0f)) << i;
    }
  }
  auto bad = g->k.gemm(GGMLType::Q6_K, nullptr, 210, nullptr, 128, nullptr, 1, 1, 128, 1);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.message().find("k = 128"), std::string::npos) << bad.message();
}

// The tensor-core GEMM (gemm_mma_tile: bf16 operands, float sums) over the same table: against
// float64 sums of the bf16-rounded operands to float rounding (a wrong fragment layout moves
// results by O(1)), and within the rounding's own size of the unrounded product; nothing
// written past n_rows or n_tok.
TEST(CudaKernels, MmaGemmMatchesTheBf16ReferenceOverTypesShapesTokens) {
  KTX_NEED_GPU(g);
  if (!g->k.has_gemm_mma(GGMLType::Q4_K)) GTEST_SKIP() << "no tensor-core GEMM in this build's code";
  for (const GemmCase& c : kGemmCases) {
    SCOPED_TRACE(std::string(ggml_type_name(static_cast<uint32_t>(c.type))) + " k " +
                 std::to_string(c.k) + " rows " + std::to_string(c.rows) + " tokens " +
                 std::to_string(c.n_tok));
    const auto w = make_weight(c.type, c.k, c.rows, 0.05f, 21 + static_cast<uint32_t>(c.rows));
    const int64_t ld_x = c.k + 4, ld_y = c.rows + 3, tok_cap = c.n_tok + 2;
    const auto x = random_floats(static_cast<size_t>(tok_cap * ld_x), 1.0f, 7 + static_cast<uint32_t>(c.k));
    auto dx = upload(x);
    std::vector<float> y(static_cast<size_t>(tok_cap * ld_y), -5.0f);
    auto dy = upload(y);
    ASSERT_TRUE(g->k.gemm(c.type, w.dev.get(), w.row_bytes, dx.as<float>(), ld_x,
                          dy.as<float>(), ld_y, c.rows, c.k, c.n_tok));
    ASSERT_TRUE(dy.download(y.data(), y.size() * sizeof(float)));
    for (int64_t t = 0; t < tok_cap; ++t) {
      for (int64_t r = 0; r < ld_y; ++r) {
        if (r >= c.rows || t >= c.n_tok) {
          ASSERT_EQ(y[t * ld_y + r], -5.0f) << "wrote past n_rows or n_tok: token " << t << " row " << r;
          continue;
        }
        double s = 0.0, sa = 0.0;
        for (int64_t i = 0; i < c.k; ++i) {
          const double p = double(gpu_test::bf16_round(w.row(r)[i])) * gpu_test::bf16_round(x[t * ld_x + i]);
          s += p;
          sa += std::fabs(p);
        }
        ASSERT_NEAR(y[t * ld_y + r], s, 1e-5 * sa + 1e-6) << "token " << t << " row " << r;
        const auto [exact, ea] = ref_dot(w.row(r), x.data() + t * ld_x, c.k);
        ASSERT_NEAR(y[t * ld_y + r], exact, 0.008 * ea + 1e-6) << "bf16 rounding: token " << t << " row " << r;
      }
    }
  }
}

// Tall matrices take 2 or 4 rows per warp: each row's sum runs in the same order whatever its
// warp's share, so the variants agree to float rounding (the same bits unless the compiler
// contracts a product differently; tails: a last warp with 1..3 rows).
TEST(CudaKernels, IntegerGemvRowsPerWarpAgree) {
  KTX_NEED_GPU(g);
  auto xq = XQuant::alloc(2048);
  ASSERT_TRUE(xq) << xq.status().message();
  for (const GGMLType type : {GGMLType::Q4_K, GGMLType::Q5_K, GGMLType::Q6_K, GGMLType::Q8_0}) {
    g->k.set_gemv16_max_rows(4);
    int64_t rows = 64;  // grow until the 4-row variant is chosen, plus a tail of 13 rows
    while (g->k.gemv16_rows_per_warp(type, rows) < 4 && rows < (int64_t{1} << 20)) rows *= 2;
    ASSERT_EQ(g->k.gemv16_rows_per_warp(type, rows), 4) << "the plan's code lacks the 4-row GEMVs";
    rows += 13;
    const int64_t k = 512;
    const size_t rb = *ggml_row_bytes(type, k);
    std::vector<uint8_t> w(rb * rows);
    const auto wf = random_floats(static_cast<size_t>(k * rows), 0.05f, 11);
    for (int64_t r = 0; r < rows; ++r) quantize_row(type, wf.data() + r * k, w.data() + r * rb, k);
    auto dw = upload(w);
    for (int64_t n_tok : {1, 3, 8}) {
      SCOPED_TRACE(std::string(ggml_type_name(static_cast<uint32_t>(type))) + " rows " +
                   std::to_string(rows) + " tokens " + std::to_string(n_tok));
      const auto x = random_floats(static_cast<size_t>(n_tok * k), 1.0f, 5);
      auto dx = upload(x);
      std::vector<std::vector<float>> ys;
      for (int cap : {1, 2, 4}) {
        g->k.set_gemv16_max_rows(cap);
        ASSERT_EQ(g->k.gemv16_rows_per_warp(type, rows), cap);
        std::vector<float> y(static_cast<size_t>(n_tok * rows + 1), -5.0f);
        auto dy = upload(y);
        ASSERT_TRUE(g->k.gemv(type, dw.get(), static_cast<int64_t>(rb), dx.as<float>(), k,
                              dy.as<float>(), rows, rows, k, n_tok, nullptr, &*xq));
        ASSERT_TRUE(dy.download(y.data(), y.size() * sizeof(float)));
        ASSERT_EQ(y.back(), -5.0f) << "wrote past the last row, " << cap << " rows per warp";
        ys.push_back(std::move(y));
      }
      for (size_t i = 0; i < ys[0].size(); ++i) {
        const float tol = 1e-6f * std::fabs(ys[0][i]) + 1e-7f;
        ASSERT_NEAR(ys[1][i], ys[0][i], tol) << "2 rows per warp, element " << i;
        ASSERT_NEAR(ys[2][i], ys[0][i], tol) << "4 rows per warp, element " << i;
      }
    }
  }
  g->k.set_gemv16_max_rows(4);
}

TEST(CudaKernels, RmsNormSiluMulAddMatchReference) {
  KTX_NEED_GPU(g);
  for (int64_t n : {1L, 100L, 7168L}) {
    const int64_t rows = 3, ld = n + 5;
    const auto x = random_floats(static_cast<size_t>(rows * ld), 2.0f, 1);
    const auto w = random_floats(static_cast<size_t>(n), 1.0f, 2);
    auto dx = upload(x);
    auto dw = upload(w);
    std::vector<float> y(static_cast<size_t>(rows * ld), 0.0f);
    auto dy = upload(y);
    ASSERT_TRUE(g->k.rms_norm(dx.as<float>(), ld, dw.as<float>(), dy.as<float>(), ld, rows, n, 1e-6f));
    ASSERT_TRUE(dy.download(y.data(), y.size() * sizeof(float)));
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < n; ++i) ss += double(x[r * ld + i]) * x[r * ld + i];
      const double inv = 1.0 / std::sqrt(ss / double(n) + 1e-6);
      for (int64_t i = 0; i < n; ++i) {
        const double want = x[r * ld + i] * inv * w[i];
        ASSERT_NEAR(y[r * ld + i], want, 1e-5 * std::fabs(want) + 1e-6) << n << ":" << r << "," << i;
      }
    }
    const auto a = random_floats(static_cast<size_t>(n), 3.0f, 5), b = random_floats(static_cast<size_t>(n), 1.0f, 6);
    auto da = upload(a);
    auto db = upload(b);
    std::vector<float> o(static_cast<size_t>(n));
    auto dout = upload(o);
    ASSERT_TRUE(g->k.silu_mul(da.as<float>(), db.as<float>(), dout.as<float>(), n));
    ASSERT_TRUE(dout.download(o.data(), o.size() * sizeof(float)));
    for (int64_t i = 0; i < n; ++i) {
      const double want = a[i] / (1.0 + std::exp(-double(a[i]))) * b[i];
      ASSERT_NEAR(o[i], want, 1e-5 * std::fabs(want) + 1e-6) << i;
    }
    ASSERT_TRUE(g->k.add(da.as<float>(), db.as<float>(), dout.as<float>(), n));
    ASSERT_TRUE(dout.download(o.data(), o.size() * sizeof(float)));
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(o[i], a[i] + b[i]) << i;
  }
}

// The fused residual add + RMSNorm against ktx_add then ktx_rms_norm: the same floats (sum and
// normed rows), also in place (sum over a) and with y over b, as ktc's buffer reuse may plan.
TEST(CudaKernels, AddRmsNormIsAddThenRmsNorm) {
  KTX_NEED_GPU(g);
  auto dl = [](const DeviceBuffer& b, size_t n) {
    std::vector<float> v(n);
    EXPECT_TRUE(b.download(v.data(), n * sizeof(float)));
    return v;
  };
  for (int64_t n : {64L, 2048L, 4100L, 7168L})
    for (int64_t rows : {1L, 3L, 8L})
      for (int alias : {0, 1, 2}) {  // 0: separate buffers, 1: sum over a, 2: y over b
        SCOPED_TRACE(::testing::Message() << "n " << n << " rows " << rows << " alias " << alias);
        const auto a = random_floats(static_cast<size_t>(rows * n), 3.0f, 7);
        const auto b = random_floats(static_cast<size_t>(rows * n), 1.0f, 8);
        const auto w = random_floats(static_cast<size_t>(n), 1.0f, 9);
        auto da = upload(a), db = upload(b), dw = upload(w);
        auto ds = upload(std::vector<float>(a.size(), 0.0f)), dy = upload(std::vector<float>(a.size(), 0.0f));
        float* sum = alias == 1 ? da.as<float>() : ds.as<float>();
        float* y = alias == 2 ? db.as<float>() : dy.as<float>();
        ASSERT_TRUE(g->k.add_rms_norm_fits(da.as<float>(), db.as<float>(), sum, dw.as<float>(), y, n, n));
        ASSERT_TRUE(g->k.add_rms_norm(da.as<float>(), db.as<float>(), sum, dw.as<float>(), y, n, rows, n, 1e-6f));
        const auto got_sum = dl(alias == 1 ? da : ds, a.size());
        const auto got_y = dl(alias == 2 ? db : dy, a.size());
        auto ua = upload(a), ub = upload(b), us = upload(std::vector<float>(a.size(), 0.0f)),
             uy = upload(std::vector<float>(a.size(), 0.0f));
        ASSERT_TRUE(g->k.add(ua.as<float>(), ub.as<float>(), us.as<float>(), rows * n));
        ASSERT_TRUE(g->k.rms_norm(us.as<float>(), n, dw.as<float>(), uy.as<float>(), n, rows, n, 1e-6f));
        const auto want_sum = dl(us, a.size()), want_y = dl(uy, a.size());
        for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(got_sum[i], want_sum[i]) << "sum " << i;
        for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(got_y[i], want_y[i]) << "y " << i;
      }
  // Rows that are not float4-aligned are refused (the caller then runs add and rms_norm).
  auto d = upload(std::vector<float>(64, 1.0f));
  EXPECT_FALSE(g->k.add_rms_norm_fits(d.as<float>() + 1, d.as<float>(), d.as<float>(), d.as<float>(),
                                      d.as<float>(), 60, 60));
}

}  // namespace
}  // namespace ktx::cuda
