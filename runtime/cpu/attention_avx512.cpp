// AVX-512 instantiation of the attention block primitives (attention_simd.h). This file is
// compiled with -mavx512f -mavx512bw -mavx512vl -mf16c -mfma (runtime/cpu/CMakeLists.txt) and
// is only entered through kernels_for() after detect_cpu_isa() has seen those features.
#include <immintrin.h>

#include "runtime/cpu/attention_simd.h"

namespace ktx::cpu::attn {
namespace {

struct V512 {
  using reg = __m512;
  static constexpr int W = 16;
  static constexpr int kQkRows = 4;  // 16 accumulators + 4 keys + 1 query of 32 registers
  static constexpr int kPvVecs = 4;  // 16 accumulators + 4 values + 1 broadcast
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static reg set1(float x) { return _mm512_set1_ps(x); }
  static reg zero() { return _mm512_setzero_ps(); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static float hsum(reg v) { return _mm512_reduce_add_ps(v); }
  static float hmax(reg v) { return _mm512_reduce_max_ps(v); }
  static reg widen_f16(const uint16_t* h) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h)));
  }
  static reg widen_bf16(const uint16_t* h) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
  }
  static reg widen_i8(const int8_t* q) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q))));
  }
  static __m256 halves(reg v) {
    return _mm256_add_ps(_mm512_castps512_ps256(v),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  }
  // dst[0..4) = horizontal sums of a, b, c, d: fold to 8 lanes, then three hadds.
  static void sum4(reg a, reg b, reg c, reg d, float* dst) {
    const __m256 ab = _mm256_hadd_ps(halves(a), halves(b));
    const __m256 cd = _mm256_hadd_ps(halves(c), halves(d));
    const __m256 abcd = _mm256_hadd_ps(ab, cd);
    _mm_storeu_ps(dst, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
  }
  // e^x for x <= 0: x = n ln2 + r, degree-7 Taylor of e^r on |r| <= ln2/2, times 2^n; x < -87
  // (including -inf, the masked scores) gives exactly 0.
  static reg exp_neg(reg x) {
    const reg xc = _mm512_max_ps(x, set1(-87.0f));
    const reg n = _mm512_roundscale_ps(_mm512_mul_ps(xc, set1(1.44269504088896341f)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    reg r = _mm512_fmadd_ps(n, set1(-0.693145751953125f), xc);
    r = _mm512_fmadd_ps(n, set1(-1.42860682030941723e-6f), r);
    reg p = set1(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, set1(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, set1(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, set1(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, set1(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, set1(0.5f));
    p = _mm512_fmadd_ps(p, r, set1(1.0f));
    p = _mm512_fmadd_ps(p, r, set1(1.0f));
    const __m512i bits =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    const reg e = _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, set1(-87.0f), _CMP_GE_OQ), e);
  }
};

}  // namespace

const Kernels* kernels_avx512_impl() { return simd::make_kernels<V512>("avx512"); }

}  // namespace ktx::cpu::attn
