// gemm_f32.h: dispatch and the plain twin.
#include "runtime/cpu/gemm_f32.h"

#include <cmath>

#include "common/hw/cpu_features.h"

namespace ktx::cpu {

void gemm_f32_kn_ref(const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                     int64_t ldc, int64_t m, int64_t n, int64_t k) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      float s = 0.0f;
      for (int64_t l = 0; l < k; ++l) s = std::fma(a[i * lda + l], b[l * ldb + j], s);
      c[i * ldc + j] = s;
    }
  }
}

void gemm_f32_kn(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                 int64_t m, int64_t n, int64_t k) {
  static const bool avx512 = [] {
    const CpuIsa isa = detect_cpu_isa();
    return isa.avx512f && isa.fma;
  }();
  if (avx512) f32_detail::gemm_f32_kn_avx512(a, lda, b, ldb, c, ldc, m, n, k);
  else gemm_f32_kn_ref(a, lda, b, ldb, c, ldc, m, n, k);
}

}  // namespace ktx::cpu
