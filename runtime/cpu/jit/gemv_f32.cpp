// F32 weights against f32 activations (routers and other small float matrices the converters
// leave unquantized, e.g. DeepSeek-V3's ffn_gate_inp [7168, 256]): AVX2+FMA intrinsics, not
// generated code, because the loop has nothing to specialize beyond k. Memory-bound (4 bytes
// a weight), so one pass over a row serves up to four tokens, each with two independent
// accumulators; a masked load takes the row's last partial vector (never reading past it).
// Results differ from the reference only in the order of the float additions.
#include <immintrin.h>

#include <algorithm>

#include "runtime/cpu/jit/gemv.h"

namespace ktx::cpu {
namespace {

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// out[t] = w · x_t for G tokens (G <= 4) over k elements.
template <int G>
__attribute__((target("avx2,fma"))) void dot_group(const float* w, const float* const* x,
                                                   int64_t k, float* out) {
  __m256 acc[G][2];
  // Fully unrolled token loops keep the accumulators in registers (at -O2 GCC would leave
  // acc[] in memory: a store-forward on every FMA, a quarter of the speed).
#pragma GCC unroll 4
  for (int t = 0; t < G; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    const __m256 w0 = _mm256_loadu_ps(w + i), w1 = _mm256_loadu_ps(w + i + 8);
#pragma GCC unroll 4
    for (int t = 0; t < G; ++t) {
      acc[t][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[t] + i), acc[t][0]);
      acc[t][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[t] + i + 8), acc[t][1]);
    }
  }
  for (; i < k; i += 8) {
    const int n = static_cast<int>(std::min<int64_t>(8, k - i));
    alignas(32) int32_t lanes[8];
    for (int l = 0; l < 8; ++l) lanes[l] = l < n ? -1 : 0;
    const __m256i mask = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes));
    const __m256 wv = _mm256_maskload_ps(w + i, mask);
#pragma GCC unroll 4
    for (int t = 0; t < G; ++t)
      acc[t][0] = _mm256_fmadd_ps(wv, _mm256_maskload_ps(x[t] + i, mask), acc[t][0]);
  }
#pragma GCC unroll 4
  for (int t = 0; t < G; ++t) out[t] = hsum(_mm256_add_ps(acc[t][0], acc[t][1]));
}

class GemvF32Avx2 final : public GemvKernel {
 public:
  explicit GemvF32Avx2(int64_t k) : k_(k) {}
  std::string name() const override { return "gemv_f32_avx2"; }
  ActFormat act_format() const override { return ActFormat::f32; }
  void run(const GemvArgs& a) const override {
    for (int64_t r = 0; r < a.n_rows; ++r) {
      const auto* w = reinterpret_cast<const float*>(a.w + r * a.w_stride);
      for (int64_t t0 = 0; t0 < a.n_tokens; t0 += 4) {
        const int g = static_cast<int>(std::min<int64_t>(4, a.n_tokens - t0));
        const float* x[4];
        float out[4];
        for (int t = 0; t < g; ++t)
          x[t] = reinterpret_cast<const float*>(a.act + (t0 + t) * a.act_stride);
        switch (g) {
          case 4: dot_group<4>(w, x, k_, out); break;
          case 3: dot_group<3>(w, x, k_, out); break;
          case 2: dot_group<2>(w, x, k_, out); break;
          default: dot_group<1>(w, x, k_, out); break;
        }
        for (int t = 0; t < g; ++t) a.out[(t0 + t) * a.out_stride + r] = out[t];
      }
    }
  }

 private:
  int64_t k_;
};

}  // namespace

Expected<std::unique_ptr<GemvKernel>> create_gemv_f32_avx2(const GemvDesc& desc) {
  if (desc.type != GGMLType::F32 || desc.k < 1)
    return Error("gemv_f32_avx2: needs F32 weights and k >= 1 ({})", desc.to_string());
  return std::unique_ptr<GemvKernel>(new GemvF32Avx2(desc.k));
}

}  // namespace ktx::cpu
