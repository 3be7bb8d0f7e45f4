// The Q4_K/Q5_K level unpacking the vector bodies of the K-quant prefill GEMMs share
// (gemm_kq_i16_avx2.cpp, gemm_kq_i16_avx512.cpp, gemm_kq_i8_avx512.cpp): chunk c (64 elements)
// of a super-block as two 32-byte vectors of levels, lo = sub-block 2c, hi = sub-block 2c + 1,
// Q5_K's fifth bits from qh bit j — quant_detail::unpack_levels_k4 with AVX2 vectors.
// Internal linkage on purpose: each including file is compiled for its own ISA, and an inline
// function with external linkage could be merged into one copy built for the widest of them.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace ktx::cpu {

// qh: the block's 32 qh bytes (Q5 only).
template <bool Q5>
static inline void kq_levels_chunk(const uint8_t* qs, __m256i qh, int c, __m256i* lo, __m256i* hi) {
  const __m256i nib = _mm256_set1_epi8(15);
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
  *lo = _mm256_and_si256(b, nib);
  *hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), nib);
  if constexpr (Q5) {
    // Bit j of each qh byte to bit 4 (shifts of 16-bit lanes; the mask drops what crosses).
    const __m256i one = _mm256_set1_epi8(1);
    const __m256i b0 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c)), one);
    const __m256i b1 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c + 1)), one);
    *lo = _mm256_or_si256(*lo, _mm256_slli_epi16(b0, 4));
    *hi = _mm256_or_si256(*hi, _mm256_slli_epi16(b1, 4));
  }
}

// The block's qh bytes for kq_levels_chunk (zero for Q4_K, which has none).
template <bool Q5>
static inline __m256i kq_levels_qh(const uint8_t* blk) {
  if constexpr (Q5) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 16));
  return _mm256_setzero_si256();
}

}  // namespace ktx::cpu
