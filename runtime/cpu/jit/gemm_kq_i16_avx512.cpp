// AVX-512 VNNI body of the int16 K-quant prefill GEMM (gemm_kq_kernel.h, i16_pairs layout;
// compiled with -mavx512f -mavx512bw -mavx512vnni, entered only after create_gemm_kq_avx512
// checked the CPU). Per 16-row panel and super-block, each row's super-block is expanded to
// int16 w' = sc·q in an L1 scratch (row-major, as the GGUF stores it); then per token group
// and 8-row half, for each pair of elements one 64-byte load brings the 16 tokens' values and
// every row's pair is broadcast into a vpdpwssd: 8 accumulators of 16 tokens, one int16
// product per useful multiply-add. Window sums convert to float and add into S; the epilogue
// per super-block is the twin's, operation for operation (no implicit contraction: the file
// builds with -ffp-contract=off).
#include <immintrin.h>

#include <cstring>

#include "runtime/cpu/jit/gemm_kq_i16.h"
#include "runtime/cpu/jit/kq_levels_avx2.h"

namespace ktx::cpu::kq_i16_detail {
namespace {

constexpr int kRowsPerPass = 8;  // rows per pass of two token groups (16 of one)

// The twin's kq_i16_expand_row with vectors: per 64-element chunk, 32 bytes of nibbles (low:
// sub-block 2c, high: 2c+1), Q5_K's fifth bits from qh bit j, widened to int16 and scaled.
template <bool Q5>
inline void expand_row(const uint8_t* blk, KqI16Row* out) {
  uint8_t sc[8];
  kq_i16_expand_header(blk, out, sc);
  const uint8_t* qs = blk + (Q5 ? 48 : 16);
  const __m256i qh = kq_levels_qh<Q5>(blk);
  for (int c = 0; c < 4; ++c) {
    __m256i lo, hi;
    kq_levels_chunk<Q5>(qs, qh, c, &lo, &hi);
    const __m512i wl = _mm512_mullo_epi16(_mm512_cvtepu8_epi16(lo), _mm512_set1_epi16(sc[2 * c]));
    const __m512i wh = _mm512_mullo_epi16(_mm512_cvtepu8_epi16(hi), _mm512_set1_epi16(sc[2 * c + 1]));
    _mm512_store_si512(reinterpret_cast<__m512i*>(out->wq + 64 * c), wl);
    _mm512_store_si512(reinterpret_cast<__m512i*>(out->wq + 64 * c + 32), wh);
  }
}

inline int32_t pair_at(const int16_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Rows of the panel against token groups g0 (and g0 + 1 when G = 2) of one super-block: the
// out rows += the epilogue. R rows x G token vectors of int32 window sums in registers; each
// row's pair is broadcast once and used for the G vectors; S (the float window total) waits in
// a stack array between windows.
template <int W, int R, int G>
inline void pass(const KqI16Row* rows, const int16_t* const* act, const float* const* f,
                 float* const* out) {
  alignas(64) float S[G][R][16];
  for (int w0 = 0; w0 < kKqSuper; w0 += W) {
    // The G x R sums must stay in registers: every loop over them is unrolled (GCC otherwise
    // keeps I in memory and loads and stores it around each vpdpwssd).
    __m512i I[G][R];
#pragma GCC unroll 16
    for (int g = 0; g < G; ++g)
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) I[g][r] = _mm512_setzero_si512();
    for (int p = w0 / 2; p < (w0 + W) / 2; ++p) {
      __m512i x[G];
#pragma GCC unroll 16
      for (int g = 0; g < G; ++g) x[g] = _mm512_loadu_si512(act[g] + p * 2 * kKqTile);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512i wr = _mm512_set1_epi32(pair_at(rows[r].wq + 2 * p));
#pragma GCC unroll 16
        for (int g = 0; g < G; ++g) I[g][r] = _mm512_dpwssd_epi32(I[g][r], x[g], wr);
      }
    }
#pragma GCC unroll 16
    for (int g = 0; g < G; ++g)
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512 fs = _mm512_cvtepi32_ps(I[g][r]);
        _mm512_store_ps(S[g][r], w0 == 0 ? fs : _mm512_add_ps(_mm512_load_ps(S[g][r]), fs));
      }
  }
  for (int g = 0; g < G; ++g) {
    const __m512 ad = _mm512_loadu_ps(f[g]);
    for (int r = 0; r < R; ++r) {
      __m512 m = _mm512_mul_ps(_mm512_loadu_ps(f[g] + 16), _mm512_set1_ps(rows[r].m[0]));
      for (int j = 1; j < 8; ++j) {
        m = _mm512_fmadd_ps(_mm512_loadu_ps(f[g] + 16 * (1 + j)), _mm512_set1_ps(rows[r].m[j]), m);
      }
      m = _mm512_mul_ps(m, _mm512_set1_ps(rows[r].dmin));
      const __m512 res = _mm512_fmsub_ps(_mm512_load_ps(S[g][r]), _mm512_set1_ps(rows[r].d), m);
      float* o = out[g] + r * kKqTile;
      _mm512_storeu_ps(o, _mm512_fmadd_ps(res, ad, _mm512_loadu_ps(o)));
    }
  }
}

template <bool Q5>
class GemmKqAvx512 final : public GemmKqKernel {
 public:
  std::string name() const override { return Q5 ? "gemm_q5_k_avx512" : "gemm_q4_k_avx512"; }
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
      const int16_t* act[2];
      const float* f[2];
      float* out[2];
      auto at = [&](int64_t g, int i) {
        act[i] = reinterpret_cast<const int16_t*>(a.act + g * a.act_group_stride + s * kKqActBytes);
        f[i] = reinterpret_cast<const float*>(reinterpret_cast<const uint8_t*>(a.act_f) +
                                              g * a.act_f_group_stride) + s * kKqActFloats;
        out[i] = a.out + g * a.out_group_stride;
      };
      int64_t g = 0;
      for (; g + 2 <= a.n_groups; g += 2) {  // two groups: each broadcast feeds two products
        at(g, 0), at(g + 1, 1);
        for (int r0 = 0; r0 < kKqTile; r0 += kRowsPerPass) {
          float* o[2] = {out[0] + r0 * kKqTile, out[1] + r0 * kKqTile};
          pass<W, kRowsPerPass, 2>(rows + r0, act, f, o);
        }
      }
      if (g < a.n_groups) {
        at(g, 0);
        float* o[1] = {out[0]};
        pass<W, kKqTile, 1>(rows, act, f, o);
      }
    }
  }
};

}  // namespace

std::unique_ptr<GemmKqKernel> make_avx512(GGMLType type) {
  if (type == GGMLType::Q5_K) return std::make_unique<GemmKqAvx512<true>>();
  return std::make_unique<GemmKqAvx512<false>>();
}

}  // namespace ktx::cpu::kq_i16_detail
