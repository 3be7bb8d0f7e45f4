// C = A·B in float32 with B given as K rows of N (the "transposed weight" form: MLA's split
// attn_k_b holds W_kᵀ, kv_lora rows of qk_nope, so expanding a latent c into a head's key part
// is c·W_kᵀ). Used by the non-absorbed MLA prefill; exact float32 products, sums in a fixed
// order per output (l = 0..K-1), so results do not depend on blocking or threads.
#pragma once

#include <cstdint>

namespace ktx::cpu {

// c[i * ldc + j] = Σ_l a[i * lda + l] · b[l * ldb + j] for i < m, j < n (overwrites c).
// AVX-512 body where the CPU has it (4 rows x 64 columns per register block), else plain.
void gemm_f32_kn(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                 int64_t m, int64_t n, int64_t k);
// The plain twin (same sum order).
void gemm_f32_kn_ref(const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                     int64_t ldc, int64_t m, int64_t n, int64_t k);

namespace f32_detail {
void gemm_f32_kn_avx512(const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                        int64_t ldc, int64_t m, int64_t n, int64_t k);
}  // namespace f32_detail

}  // namespace ktx::cpu
