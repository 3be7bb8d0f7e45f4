// AVX2 + FMA + F16C instantiation of the attention block primitives (attention_simd.h), for
// CPUs without AVX-512. Compiled with -mavx2 -mfma -mf16c (runtime/cpu/CMakeLists.txt) and
// only entered through kernels_for() after detect_cpu_isa() has seen those features.
#include <immintrin.h>

#include "runtime/cpu/attention_simd.h"

namespace ktx::cpu::attn {
namespace {

struct V256 {
  using reg = __m256;
  static constexpr int W = 8;
  static constexpr int kQkRows = 2;  // 8 accumulators + 4 keys + 1 query of 16 registers
  static constexpr int kPvVecs = 2;  // 8 accumulators + 2 values + 1 broadcast
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static reg set1(float x) { return _mm256_set1_ps(x); }
  static reg zero() { return _mm256_setzero_ps(); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static float hsum(reg v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  static float hmax(reg v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
  }
  static reg widen_f16(const uint16_t* h) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)));
  }
  static reg widen_bf16(const uint16_t* h) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
  static reg widen_i8(const int8_t* q) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q))));
  }
  // dst[0..4) = horizontal sums of a, b, c, d (three hadds, then fold the 128-bit halves).
  static void sum4(reg a, reg b, reg c, reg d, float* dst) {
    const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    _mm_storeu_ps(dst, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
  }
  // Same range reduction and polynomial as the AVX-512 version (attention_avx512.cpp).
  static reg exp_neg(reg x) {
    const reg xc = _mm256_max_ps(x, set1(-87.0f));
    const reg n = _mm256_round_ps(_mm256_mul_ps(xc, set1(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    reg r = _mm256_fmadd_ps(n, set1(-0.693145751953125f), xc);
    r = _mm256_fmadd_ps(n, set1(-1.42860682030941723e-6f), r);
    reg p = set1(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, set1(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, set1(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, set1(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, set1(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, set1(0.5f));
    p = _mm256_fmadd_ps(p, r, set1(1.0f));
    p = _mm256_fmadd_ps(p, r, set1(1.0f));
    const __m256i bits =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    const reg e = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
    return _mm256_and_ps(e, _mm256_cmp_ps(x, set1(-87.0f), _CMP_GE_OQ));
  }
};

}  // namespace

const Kernels* kernels_avx2_impl() { return simd::make_kernels<V256>("avx2"); }

}  // namespace ktx::cpu::attn
