// AVX2 body of the int16 K-quant prefill GEMM (gemm_kq_kernel.h, i16_pairs layout; compiled
// with -mavx2 -mfma, entered only after create_gemm_kq_avx2 checked the CPU): the AVX-512
// body's algorithm (gemm_kq_i16_avx512.cpp) on 8-lane vectors. Per 16-row panel and
// super-block each row is expanded to int16 w' = sc·q in an L1 scratch; then per element pair
// two 32-byte loads bring the 16 tokens' values (tokens 0-7, 8-15), every row's pair is
// broadcast and vpmaddwd + vpaddd add both products of the pair into two accumulators of 8
// tokens. vpmaddwd is exact here (|w'| <= 1953 and |v| <= 32512: no pair sum reaches 2^31),
// so the int32 window sums equal vpdpwssd's, and the float epilogue is the twin's, operation
// for operation (-ffp-contract=off): the kernel equals its twin bit for bit.
#include <immintrin.h>

#include <cstring>

#include "runtime/cpu/jit/gemm_kq_i16.h"
#include "runtime/cpu/jit/kq_levels_avx2.h"

namespace ktx::cpu::kq_i16_detail {
namespace {

// Rows per pass: 4 rows x 2 token halves = 8 accumulators, with the 2 activation vectors, the
// broadcast and the product temporary 12 of the 16 ymm registers.
constexpr int kRowsPerPass = 4;

// kq_i16_expand_row with 16-lane int16 vectors: per 64-element chunk, 32 bytes of nibbles (low:
// sub-block 2c, high: 2c+1), Q5_K's fifth bits from qh bit j, widened and scaled.
template <bool Q5>
inline void expand_row(const uint8_t* blk, KqI16Row* out) {
  uint8_t sc[8];
  kq_i16_expand_header(blk, out, sc);
  const uint8_t* qs = blk + (Q5 ? 48 : 16);
  const __m256i qh = kq_levels_qh<Q5>(blk);
  for (int c = 0; c < 4; ++c) {
    __m256i lo, hi;
    kq_levels_chunk<Q5>(qs, qh, c, &lo, &hi);
    const __m256i sl = _mm256_set1_epi16(sc[2 * c]), sh = _mm256_set1_epi16(sc[2 * c + 1]);
    int16_t* o = out->wq + 64 * c;
    for (int half = 0; half < 2; ++half) {  // 16 elements per widening
      const __m128i l8 = half ? _mm256_extracti128_si256(lo, 1) : _mm256_castsi256_si128(lo);
      const __m128i h8 = half ? _mm256_extracti128_si256(hi, 1) : _mm256_castsi256_si128(hi);
      _mm256_store_si256(reinterpret_cast<__m256i*>(o + 16 * half),
                         _mm256_mullo_epi16(_mm256_cvtepu8_epi16(l8), sl));
      _mm256_store_si256(reinterpret_cast<__m256i*>(o + 32 + 16 * half),
                         _mm256_mullo_epi16(_mm256_cvtepu8_epi16(h8), sh));
    }
  }
}

inline int32_t pair_at(const int16_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// R rows of the panel against one token group of one super-block: out rows += the epilogue.
// I[r][h]: int32 window sums of row r for tokens 8h..8h+7; S waits in a stack array.
template <int W, int R>
inline void pass(const KqI16Row* rows, const int16_t* act, const float* f, float* out) {
  alignas(32) float S[R][16];
  for (int w0 = 0; w0 < kKqSuper; w0 += W) {
    __m256i I[R][2];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) I[r][0] = I[r][1] = _mm256_setzero_si256();
    for (int p = w0 / 2; p < (w0 + W) / 2; ++p) {
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(act + p * 2 * kKqTile));
      const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(act + p * 2 * kKqTile + 16));
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m256i wr = _mm256_set1_epi32(pair_at(rows[r].wq + 2 * p));
        I[r][0] = _mm256_add_epi32(I[r][0], _mm256_madd_epi16(x0, wr));
        I[r][1] = _mm256_add_epi32(I[r][1], _mm256_madd_epi16(x1, wr));
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const __m256 fs = _mm256_cvtepi32_ps(I[r][h]);
        float* s = S[r] + 8 * h;
        _mm256_store_ps(s, w0 == 0 ? fs : _mm256_add_ps(_mm256_load_ps(s), fs));
      }
  }
  for (int h = 0; h < 2; ++h) {
    const __m256 ad = _mm256_loadu_ps(f + 8 * h);
    for (int r = 0; r < R; ++r) {
      __m256 m = _mm256_mul_ps(_mm256_loadu_ps(f + 16 + 8 * h), _mm256_set1_ps(rows[r].m[0]));
      for (int j = 1; j < 8; ++j) {
        m = _mm256_fmadd_ps(_mm256_loadu_ps(f + 16 * (1 + j) + 8 * h), _mm256_set1_ps(rows[r].m[j]), m);
      }
      m = _mm256_mul_ps(m, _mm256_set1_ps(rows[r].dmin));
      const __m256 res = _mm256_fmsub_ps(_mm256_load_ps(S[r] + 8 * h), _mm256_set1_ps(rows[r].d), m);
      float* o = out + r * kKqTile + 8 * h;
      _mm256_storeu_ps(o, _mm256_fmadd_ps(res, ad, _mm256_loadu_ps(o)));
    }
  }
}

template <bool Q5>
class GemmKqAvx2 final : public GemmKqKernel {
 public:
  std::string name() const override { return Q5 ? "gemm_q5_k_avx2" : "gemm_q4_k_avx2"; }
  GGMLType type() const override { return Q5 ? GGMLType::Q5_K : GGMLType::Q4_K; }
  KqActLayout act_layout() const override { return KqActLayout::i16_pairs; }

  void run(const GemmKqArgs& a) const override {
    constexpr int64_t block = Q5 ? 176 : 144;
    constexpr int W = Q5 ? 32 : 64;
    for (int64_t g = 0; g < a.n_groups; ++g) {
      std::memset(a.out + g * a.out_group_stride, 0, kKqTile * kKqTile * sizeof(float));
    }
    KqI16Row rows[kKqTile];
    for (int64_t s = 0; s < a.n_super; ++s) {
      for (int n = 0; n < kKqTile; ++n) expand_row<Q5>(a.w + n * a.w_stride + s * block, &rows[n]);
      for (int64_t g = 0; g < a.n_groups; ++g) {
        const auto* act = reinterpret_cast<const int16_t*>(a.act + g * a.act_group_stride + s * kKqActBytes);
        const float* f = reinterpret_cast<const float*>(reinterpret_cast<const uint8_t*>(a.act_f) +
                                                        g * a.act_f_group_stride) + s * kKqActFloats;
        float* out = a.out + g * a.out_group_stride;
        for (int r0 = 0; r0 < kKqTile; r0 += kRowsPerPass) {
          pass<W, kRowsPerPass>(rows + r0, act, f, out + r0 * kKqTile);
        }
      }
    }
  }
};

}  // namespace

std::unique_ptr<GemmKqKernel> make_avx2(GGMLType type) {
  if (type == GGMLType::Q5_K) return std::make_unique<GemmKqAvx2<true>>();
  return std::make_unique<GemmKqAvx2<false>>();
}

}  // namespace ktx::cpu::kq_i16_detail
