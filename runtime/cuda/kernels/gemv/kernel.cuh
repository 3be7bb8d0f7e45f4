// GEMV on GGUF blocks in place, for decode (a few tokens): y[t * ld_y + r] = W[r] · x[t * ld_x]
// for r < n_rows, t < n_tok (n_tok <= kGemvMaxTokens). One warp per weight row (half a warp,
// four rows each, for rows of at most 128 elements: gemv_short_rows); four lanes per
// 32-element chunk (8 elements each), so a warp step covers 8 chunks with coalesced weight and
// x reads; each lane decodes its 8 weights once and multiplies them with every token's x.
// Sums: per lane in chunk order, then a warp shuffle tree.
#pragma once

#include "common/pdl.cuh"
#include "common/quant.cuh"

#define KTX_GEMV_MAX_TOKENS 8
#define KTX_GEMV_WARPS 4  // rows per thread block

// Rows of at most 4 chunks (MLA's 128-element k_b rows): half a warp per row, each lane one
// chunk part, and KTX_GEMV_SHORT_ROWS rows per half-warp (2x that per warp: gemv_rows_per_warp
// on the host), their loads issued together: with one row per half-warp each lane had a single
// load set in flight and the launch ran in several latency-bound waves. Per row the sum is the
// lane's chunk part, then the same 16-lane shuffle tree: bit for bit the one-row form.
#define KTX_GEMV_SHORT_ROWS 4
template <int TYPE>
__device__ void gemv_short_rows(const ktx_u8* __restrict__ w, ktx_i64 row_bytes,
                                const float* __restrict__ x, ktx_i64 ld_x, float* __restrict__ y,
                                ktx_i64 ld_y, int n_rows, int k, int n_tok) {
  constexpr int RH = KTX_GEMV_SHORT_ROWS;
  constexpr int kChunks = BlockInfo<TYPE>::elems / 32;  // chunks per block
  const int n_chunks = k / 32;
  const int lane = threadIdx.x % 32, sub = lane % 16, c = sub / 4, part = sub % 4;
  const int row0 = (blockIdx.x * KTX_GEMV_WARPS + threadIdx.x / 32) * 2 * RH + lane / 16;
  if (row0 - lane / 16 >= n_rows) return;  // whole warps leave together
  const bool live = c < n_chunks;           // rows of 1..3 chunks leave lanes without a part
  float v[RH][8];
#pragma unroll
  for (int i = 0; i < RH; ++i) {
    const int row = min(row0 + 2 * i, n_rows - 1);  // rows past the end compute a copy
    if (live) decode8<TYPE>(w + row * row_bytes + (c / kChunks) * BlockInfo<TYPE>::bytes, c % kChunks, part, v[i]);
  }
  for (int t = 0; t < KTX_GEMV_MAX_TOKENS; ++t) {
    if (t >= n_tok) break;
    float xv[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) xv[e] = live ? __ldg(x + t * ld_x + 32 * c + 8 * part + e) : 0.0f;
#pragma unroll
    for (int i = 0; i < RH; ++i) {
      float s = 0.0f;
      if (live) {
#pragma unroll
        for (int e = 0; e < 8; ++e) s = fmaf(v[i][e], xv[e], s);
      }
      for (int o = 8; o > 0; o /= 2) s += __shfl_down_sync(0xffffffffu, s, o, 16);
      const int row = row0 + 2 * i;
      if (sub == 0 && row < n_rows) y[t * ld_y + row] = s;
    }
  }
}

template <int TYPE>
__device__ void gemv_rows(const ktx_u8* __restrict__ w, ktx_i64 row_bytes,
                          const float* __restrict__ x, ktx_i64 ld_x, float* __restrict__ y,
                          ktx_i64 ld_y, int n_rows, int k, int n_tok) {
  const int n_chunks = k / 32;
  if (n_chunks <= 4) return gemv_short_rows<TYPE>(w, row_bytes, x, ld_x, y, ld_y, n_rows, k, n_tok);
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * KTX_GEMV_WARPS + threadIdx.x / 32;
  if (row >= n_rows) return;
  constexpr int kChunks = BlockInfo<TYPE>::elems / 32;  // chunks per block
  const ktx_u8* wr = w + row * row_bytes;
  const int part = lane % 4;
  float acc[KTX_GEMV_MAX_TOKENS];
  for (int t = 0; t < KTX_GEMV_MAX_TOKENS; ++t) acc[t] = 0.0f;
  float v[8];
  // Unrolled so that four chunks' weight and x loads are in flight together: one at a time, a
  // warp waits a memory latency per step (the router's 7168-wide F32 rows: 28 steps).
#pragma unroll 4
  for (int c = lane / 4; c < n_chunks; c += 8) {
    decode8<TYPE>(wr + (c / kChunks) * BlockInfo<TYPE>::bytes, c % kChunks, part, v);
    const float* xc = x + 32 * c + 8 * part;
    for (int t = 0; t < KTX_GEMV_MAX_TOKENS; ++t) {
      if (t >= n_tok) break;
      const float* xt = xc + t * ld_x;
      float s = acc[t];
      for (int i = 0; i < 8; ++i) s = fmaf(v[i], __ldg(xt + i), s);
      acc[t] = s;
    }
  }
  for (int t = 0; t < KTX_GEMV_MAX_TOKENS; ++t) {
    if (t >= n_tok) break;
    float s = acc[t];
    for (int o = 16; o > 0; o /= 2) s += __shfl_down_sync(0xffffffffu, s, o);
    if (lane == 0) y[t * ld_y + row] = s;
  }
}

#define KTX_GEMV_ENTRY(NAME, TYPE)                                                            \
  extern "C" __global__ void __launch_bounds__(32 * KTX_GEMV_WARPS)                          \
      NAME(const ktx_u8* w, ktx_i64 row_bytes, const float* x, ktx_i64 ld_x, float* y,       \
           ktx_i64 ld_y, int n_rows, int k, int n_tok) {                                     \
    KTX_PDL_ENTER();                                                                         \
    gemv_rows<TYPE>(w, row_bytes, x, ld_x, y, ld_y, n_rows, k, n_tok);                       \
  }

KTX_GEMV_ENTRY(ktx_gemv_f32, KTX_F32)
KTX_GEMV_ENTRY(ktx_gemv_f16, KTX_F16)
KTX_GEMV_ENTRY(ktx_gemv_bf16, KTX_BF16)
KTX_GEMV_ENTRY(ktx_gemv_q4_0, KTX_Q4_0)
KTX_GEMV_ENTRY(ktx_gemv_q5_0, KTX_Q5_0)
KTX_GEMV_ENTRY(ktx_gemv_q8_0, KTX_Q8_0)
KTX_GEMV_ENTRY(ktx_gemv_q4_k, KTX_Q4_K)
KTX_GEMV_ENTRY(ktx_gemv_q5_k, KTX_Q5_K)
KTX_GEMV_ENTRY(ktx_gemv_q6_k, KTX_Q6_K)
