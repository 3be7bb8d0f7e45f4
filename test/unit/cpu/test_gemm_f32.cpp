// gemm_f32_kn (runtime/cpu/gemm_f32.h) equals its plain twin bit for bit (both fma-accumulate
// every output over l in order) over shapes with row tails (not a multiple of 4), column tails
// (not a multiple of 16 or 64) and strides, and agrees with a double-precision product.
#include <gtest/gtest.h>

#include <cmath>

#include "runtime/cpu/gemm_f32.h"
#include "test/unit/cpu/moe_test_util.h"

namespace ktx::cpu {
namespace {

TEST(GemmF32, MatchesTwinBitForBitOverShapes) {
  struct Shape { int64_t m, n, k; };
  for (const Shape& sh : {Shape{1, 1, 1}, Shape{3, 17, 5}, Shape{4, 64, 512}, Shape{7, 128, 512},
                          Shape{33, 100, 31}, Shape{5, 65, 64}}) {
    SCOPED_TRACE(std::to_string(sh.m) + "x" + std::to_string(sh.n) + "x" + std::to_string(sh.k));
    const int64_t lda = sh.k + 3, ldb = sh.n + 5, ldc = sh.n + 2;
    const auto a = test::random_floats(sh.m * lda, 1.0f, 3);
    const auto b = test::random_floats(sh.k * ldb, 1.0f, 4);
    std::vector<float> got(sh.m * ldc, -9.0f), want(sh.m * ldc, -9.0f);
    gemm_f32_kn(a.data(), lda, b.data(), ldb, got.data(), ldc, sh.m, sh.n, sh.k);
    gemm_f32_kn_ref(a.data(), lda, b.data(), ldb, want.data(), ldc, sh.m, sh.n, sh.k);
    for (int64_t i = 0; i < sh.m; ++i) {
      for (int64_t j = 0; j < ldc; ++j) {
        ASSERT_EQ(got[i * ldc + j], want[i * ldc + j]) << i << "," << j;
        if (j >= sh.n) continue;
        double s = 0, sa = 0;
        for (int64_t l = 0; l < sh.k; ++l) {
          s += double(a[i * lda + l]) * b[l * ldb + j];
          sa += std::fabs(double(a[i * lda + l]) * b[l * ldb + j]);
        }
        ASSERT_NEAR(got[i * ldc + j], s, 1e-6 * sa + 1e-6) << i << "," << j;
      }
    }
  }
}

}  // namespace
}  // namespace ktx::cpu
