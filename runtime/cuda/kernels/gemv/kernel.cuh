// GEMV on GGUF blocks in place, for decode (a few tokens): y[t * ld_y + r] = W[r] · x[t * ld_x]
// for r < n_rows, t < n_tok (n_tok <= kGemvMaxTokens). One warp per weight row (half a warp
// for rows of at most 128 elements); four lanes per 32-element chunk (8 elements each), so a
// warp step covers 8 chunks with coalesced weight and x reads; each lane decodes its 8 weights
// once and multiplies them with every token's x.
// Sums: per lane in chunk order, then a warp shuffle tree.
#pragma once

#include "common/pdl.cuh"
#include "common/quant.cuh"

#define KTX_GEMV_MAX_TOKENS 8
#define KTX_GEMV_WARPS 4  // rows per thread block

template <int TYPE>
__device__ void gemv_rows(const ktx_u8* __restrict__ w, ktx_i64 row_bytes,
                          const float* __restrict__ x, ktx_i64 ld_x, float* __restrict__ y,
                          ktx_i64 ld_y, int n_rows, int k, int n_tok) {
  const int n_chunks = k / 32;
  // Rows of at most 4 chunks (MLA's 128-element k_b rows) take half a warp each, two rows per
  // warp (KTX_GEMV_ROWS_PER_WARP on the host); a row's sum is the same either way.
  const int L = n_chunks <= 4 ? 16 : 32, rpw = 32 / L;
  const int lane = threadIdx.x % 32, sub = lane % L;
  const int row0 = (blockIdx.x * KTX_GEMV_WARPS + threadIdx.x / 32) * rpw;
  if (row0 >= n_rows) return;
  const int row = min(row0 + lane / L, n_rows - 1);  // a spare half computes a copy
  constexpr int kChunks = BlockInfo<TYPE>::elems / 32;  // chunks per block
  const ktx_u8* wr = w + row * row_bytes;
  const int part = sub % 4;
  float acc[KTX_GEMV_MAX_TOKENS];
  for (int t = 0; t < KTX_GEMV_MAX_TOKENS; ++t) acc[t] = 0.0f;
  float v[8];
  // Unrolled so that four chunks' weight and x loads are in flight together: one at a time, a
  // warp waits a memory latency per step (the router's 7168-wide F32 rows: 28 steps).
#pragma unroll 4
  for (int c = sub / 4; c < n_chunks; c += L / 4) {
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
    for (int o = L / 2; o > 0; o /= 2) s += __shfl_down_sync(0xffffffffu, s, o, L);
    if (sub == 0 && row0 + lane / L < n_rows) y[t * ld_y + row] = s;
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
