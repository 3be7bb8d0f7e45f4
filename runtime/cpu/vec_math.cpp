// Vectorized elementwise math (see vec_math.h). The vector bodies are compiled for their ISA
// with target attributes and chosen at run time, so the library still runs on any x86-64.
#include "runtime/cpu/vec_math.h"

#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>

#include "common/hw/cpu_features.h"

namespace ktx::cpu {
namespace {

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693145751953125f;     // ln 2 with the low 9 mantissa bits zero
constexpr float kLn2Lo = 1.42860682030941723e-6f;  // ln 2 − kLn2Hi
constexpr float kYMin = -87.0f, kYMax = 88.0f;
// 1/k! for k = 7 .. 2 (Horner from the top); the constant and linear terms are 1.
constexpr float kC[6] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f};

float silu_one(float g, float u) {
  const float y = std::clamp(-g, kYMin, kYMax);
  const float n = std::nearbyint(y * kLog2e);
  float r = std::fma(n, -kLn2Hi, y);
  r = std::fma(n, -kLn2Lo, r);
  float p = kC[0];
  for (int k = 1; k < 6; ++k) p = std::fma(p, r, kC[k]);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  const float scale = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  const float e = p * scale;
  return std::max(g, -kYMax) / (1.0f + e) * u;  // g < -88: ~0, not g / (1 + e^88)
}

__attribute__((target("avx2,fma"))) void silu_mul_avx2(const float* g, const float* u, float* h,
                                                        int64_t n) {
  const __m256 lo = _mm256_set1_ps(kYMin), hi = _mm256_set1_ps(kYMax);
  const __m256 log2e = _mm256_set1_ps(kLog2e), ln2hi = _mm256_set1_ps(-kLn2Hi);
  const __m256 ln2lo = _mm256_set1_ps(-kLn2Lo), one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i), uv = _mm256_loadu_ps(u + i);
    const __m256 y = _mm256_min_ps(_mm256_max_ps(_mm256_sub_ps(_mm256_setzero_ps(), gv), lo), hi);
    const __m256 nn = _mm256_round_ps(_mm256_mul_ps(y, log2e),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(nn, ln2hi, y);
    r = _mm256_fmadd_ps(nn, ln2lo, r);
    __m256 p = _mm256_set1_ps(kC[0]);
    for (int k = 1; k < 6; ++k) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC[k]));
    p = _mm256_fmadd_ps(p, r, one);
    p = _mm256_fmadd_ps(p, r, one);
    const __m256i bits = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(nn), _mm256_set1_epi32(127)), 23);
    const __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
    const __m256 num = _mm256_max_ps(gv, _mm256_set1_ps(-kYMax));
    _mm256_storeu_ps(h + i, _mm256_mul_ps(_mm256_div_ps(num, _mm256_add_ps(one, e)), uv));
  }
  for (; i < n; ++i) h[i] = silu_one(g[i], u[i]);
}

bool has_avx2_fma() {
  static const bool ok = [] {
    const CpuIsa cpu = detect_cpu_isa();
    return cpu.avx2 && cpu.fma;
  }();
  return ok;
}

}  // namespace

void silu_mul_ref(const float* g, const float* u, float* h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] = silu_one(g[i], u[i]);
}

void silu_mul(const float* g, const float* u, float* h, int64_t n) {
  if (has_avx2_fma()) {
    silu_mul_avx2(g, u, h, n);
  } else {
    silu_mul_ref(g, u, h, n);
  }
}

}  // namespace ktx::cpu
