// AVX-512 VNNI body of the int8-activation K-quant prefill GEMM (gemm_kq_kernel.h, i8_quads
// layout; compiled with -mavx512f -mavx512bw -mavx512vnni, entered only after
// create_gemm_kq_avx512_i8 checked the CPU). Per 16-row panel and super-block, each row's
// super-block is expanded to its unsigned levels (bytes, element order) in an L1 scratch;
// then per pass of G token groups x R rows, for each element quad one 64-byte load brings the
// 16 tokens' four int8 values of each group, and each row's four levels are broadcast into a
// vpdpbusd per group (u8 weights x s8 activations): G x R int32 sums of one 32-element
// sub-block, then the float epilogue of the sub-block into G x R float accumulators kept in
// registers for the whole super-block. The epilogue is the twin's, operation for operation
// (no implicit contraction: the file builds with -ffp-contract=off).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "common/quant/quant.h"
#include "runtime/cpu/jit/gemm_kq_i8.h"
#include "runtime/cpu/jit/kq_levels_avx2.h"

namespace ktx::cpu::kq_i8_detail {
namespace {

// kq_i8_expand_header without the per-scale calls: the 12 scale bytes unpacked as three
// words (llama.cpp's masks: bytes 0..7 become sc_0..7, 8..15 m_0..7), widened to float and
// multiplied by d and dmin: the same floats.
inline void expand_header(const uint8_t* blk, KqI8Row* out) {
  uint16_t hd[2];
  std::memcpy(hd, blk, 4);
  uint32_t u[4];
  std::memcpy(u, blk + 4, 12);
  constexpr uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
  u[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
  const uint32_t m03 = u[1] & k1;
  u[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
  u[2] = m03;
  u[0] &= k1;
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u));
  const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b));
  const __m256d d = _mm256_castps_pd(_mm256_set1_ps(fp16_to_fp32(hd[0])));
  const __m256d dmin = _mm256_castps_pd(_mm256_set1_ps(fp16_to_fp32(hd[1])));
  const __m512 scale = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(d), dmin, 1));
  _mm512_storeu_ps(out->dsc, _mm512_mul_ps(v, scale));  // dsc[0..7], dm[0..7] are adjacent
}

// The twin's kq_i8_expand_row with vectors: per 64-element chunk, 32 bytes of nibbles (low:
// sub-block 2c, high: 2c+1), Q5_K's fifth bits from qh bit j.
template <bool Q5>
inline void expand_row(const uint8_t* blk, KqI8Row* out) {
  expand_header(blk, out);
  const uint8_t* qs = blk + (Q5 ? 48 : 16);
  const __m256i qh = kq_levels_qh<Q5>(blk);
  for (int c = 0; c < 4; ++c) {
    __m256i lo, hi;
    kq_levels_chunk<Q5>(qs, qh, c, &lo, &hi);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out->q + 64 * c), lo);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out->q + 64 * c + 32), hi);
  }
}

inline int32_t quad_at(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// R rows of the panel against token groups act[0..G) of one super-block: out rows += the
// epilogue. Every loop over the G x R accumulators is unrolled so they stay in registers.
template <int R, int G>
inline void pass(const KqI8Row* rows, const int8_t* const* act, float* const* out) {
  __m512 F[G][R];
#pragma GCC unroll 16
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) F[g][r] = _mm512_loadu_ps(out[g] + r * kKqTile);
  for (int j = 0; j < 8; ++j) {
    __m512i I[G][R];
#pragma GCC unroll 16
    for (int g = 0; g < G; ++g)
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) I[g][r] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int p = 8 * j; p < 8 * j + 8; ++p) {
      __m512i x[G];
#pragma GCC unroll 16
      for (int g = 0; g < G; ++g) x[g] = _mm512_loadu_si512(act[g] + p * 64);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512i wr = _mm512_set1_epi32(quad_at(rows[r].q + 4 * p));
#pragma GCC unroll 16
        for (int g = 0; g < G; ++g) I[g][r] = _mm512_dpbusd_epi32(I[g][r], wr, x[g]);
      }
    }
#pragma GCC unroll 16
    for (int g = 0; g < G; ++g) {
      const __m512 ad = _mm512_loadu_ps(reinterpret_cast<const float*>(act[g] + kKqI8Scales) + 16 * j);
      const __m512 mb = _mm512_loadu_ps(reinterpret_cast<const float*>(act[g] + kKqI8Mins) + 16 * j);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512 p = _mm512_mul_ps(ad, _mm512_set1_ps(rows[r].dsc[j]));
        F[g][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(I[g][r]), p, F[g][r]);
        F[g][r] = _mm512_fnmadd_ps(mb, _mm512_set1_ps(rows[r].dm[j]), F[g][r]);
      }
    }
  }
#pragma GCC unroll 16
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) _mm512_storeu_ps(out[g] + r * kKqTile, F[g][r]);
}

// Rows per pass of two token groups (8 int32 sums + 8 float accumulators + 2 token vectors)
// and of a lone group (16 + 1): measured against 2 x 2, 2 x 8 and 1 x 4 (docs/kernels.md).
constexpr int kRowsPerPass = 4;
constexpr int kRowsLone = 8;                 // rows per pass of a lone group

template <bool Q5>
class GemmKqAvx512I8 final : public GemmKqKernel {
 public:
  std::string name() const override {
    return Q5 ? "gemm_q5_k_avx512_i8" : "gemm_q4_k_avx512_i8";
  }
  GGMLType type() const override { return Q5 ? GGMLType::Q5_K : GGMLType::Q4_K; }
  KqActLayout act_layout() const override { return KqActLayout::i8_quads; }

  void run(const GemmKqArgs& a) const override {
    constexpr int64_t block = Q5 ? 176 : 144;
    for (int64_t g = 0; g < a.n_groups; ++g) {
      std::memset(a.out + g * a.out_group_stride, 0, kKqTile * kKqTile * sizeof(float));
    }
    KqI8Row rows[kKqTile];
    // The panel after this one (the driver's next call, 16 rows on) into L2, a share per
    // super-block: a panel is 16 short rows, too short a stream for the hardware prefetcher
    // (a 16-token group per expert otherwise waits on DRAM). Prefetches never fault.
    const char* next = reinterpret_cast<const char*>(a.w + kKqTile * a.w_stride);
    const int64_t lines = (kKqTile * a.w_stride + 63) / 64, per = (lines + a.n_super - 1) / a.n_super;
    for (int64_t s = 0; s < a.n_super; ++s) {
      for (int64_t l = s * per; l < std::min(lines, (s + 1) * per); ++l)
        _mm_prefetch(next + 64 * l, _MM_HINT_T1);
      for (int n = 0; n < kKqTile; ++n) expand_row<Q5>(a.w + n * a.w_stride + s * block, &rows[n]);
      const int8_t* act[2];
      float* out[2];
      auto at = [&](int64_t g, int i) {
        act[i] = a.act + g * a.act_group_stride + s * kKqActBytes;
        out[i] = a.out + g * a.out_group_stride;
      };
      int64_t g = 0;
      for (; g + 2 <= a.n_groups; g += 2) {  // two groups: each broadcast feeds two products
        at(g, 0), at(g + 1, 1);
        for (int r0 = 0; r0 < kKqTile; r0 += kRowsPerPass) {
          float* o[2] = {out[0] + r0 * kKqTile, out[1] + r0 * kKqTile};
          pass<kRowsPerPass, 2>(rows + r0, act, o);
        }
      }
      for (; g < a.n_groups; ++g) {
        at(g, 0);
        for (int r0 = 0; r0 < kKqTile; r0 += kRowsLone) {
          float* o[1] = {out[0] + r0 * kKqTile};
          pass<kRowsLone, 1>(rows + r0, act, o);
        }
      }
    }
  }
};

}  // namespace

std::unique_ptr<GemmKqKernel> make_avx512(GGMLType type) {
  if (type == GGMLType::Q5_K) return std::make_unique<GemmKqAvx512I8<true>>();
  return std::make_unique<GemmKqAvx512I8<false>>();
}

}  // namespace ktx::cpu::kq_i8_detail
