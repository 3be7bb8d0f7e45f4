// AVX-512 body of gemm_f32_kn (compiled with -mavx512f -mfma; entered after detect_cpu_isa).
// Register block: 4 rows of A x 64 columns of B (16 accumulators); per l, 4 broadcasts and 4
// loads feed 16 FMAs. Each output is fma-accumulated over l = 0..K-1 in order, like the twin.
#include <immintrin.h>

#include "runtime/cpu/gemm_f32.h"

namespace ktx::cpu::f32_detail {

void gemm_f32_kn_avx512(const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                        int64_t ldc, int64_t m, int64_t n, int64_t k) {
  for (int64_t j0 = 0; j0 < n; j0 += 64) {
    const int64_t nj = n - j0 < 64 ? n - j0 : 64;
    __mmask16 mask[4];
    for (int v = 0; v < 4; ++v) {
      const int64_t left = nj - 16 * v;
      mask[v] = left >= 16 ? static_cast<__mmask16>(0xFFFF)
                           : left <= 0 ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1u << left) - 1);
    }
    for (int64_t i0 = 0; i0 < m; i0 += 4) {
      const int64_t ni = m - i0 < 4 ? m - i0 : 4;
      __m512 acc[4][4];
      for (int r = 0; r < 4; ++r)
        for (int v = 0; v < 4; ++v) acc[r][v] = _mm512_setzero_ps();
      for (int64_t l = 0; l < k; ++l) {
        const float* bl = b + l * ldb + j0;
        __m512 bv[4];
        for (int v = 0; v < 4; ++v) bv[v] = _mm512_maskz_loadu_ps(mask[v], bl + 16 * v);
        for (int r = 0; r < 4; ++r) {
          if (r >= ni) break;
          const __m512 av = _mm512_set1_ps(a[(i0 + r) * lda + l]);
          for (int v = 0; v < 4; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
      }
      for (int r = 0; r < ni; ++r)
        for (int v = 0; v < 4; ++v)
          if (mask[v]) _mm512_mask_storeu_ps(c + (i0 + r) * ldc + j0 + 16 * v, mask[v], acc[r][v]);
    }
  }
}

}  // namespace ktx::cpu::f32_detail
