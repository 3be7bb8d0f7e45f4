// GEMM on GGUF blocks in place, for prefill batches: y[t * ld_y + r] = W[r] · x[t * ld_x] for
// r < n_rows, t < n_tok (any number of tokens). The GEMV family (gemv/kernel.cuh) reads every
// weight once per 8 tokens; here a thread block decodes a tile of KTX_GEMM_BM rows once per
// KTX_GEMM_BN tokens.
//
// A block: KTX_GEMM_BM rows x KTX_GEMM_BN tokens of y, 256 threads, the k loop one 32-element
// chunk at a time. Per chunk, the block decodes the tile's weights to float in shared memory
// (four threads per row and chunk, 8 elements each, with the GEMV's decode8: coalesced 32-byte
// reads of a chunk) and copies the tokens' x chunk; then each thread multiplies 8 rows by 4
// tokens (float FMA, k in order). Rows past n_rows decode a copy of the last row and tokens
// past n_tok read zeros; neither is stored. The sums run over k in order per output, so a
// row's result does not depend on the tile it lands in.
#pragma once

#include "common/mma.cuh"
#include "common/pdl.cuh"
#include "common/quant.cuh"

#define KTX_GEMM_BM 128
#define KTX_GEMM_BN 64
#define KTX_GEMM_THREADS 256

// What thread tid of a tile's block reads of 32-element chunk c, both tiles alike: the weights
// of rows tid / 4 and tid / 4 + 64 of the tile (part tid % 4 of the chunk, 8 elements each;
// rows past n_rows decode a copy of the last row), and x of tokens tid / 8 and tid / 8 + 32
// (elements (tid % 8) * 4 .. + 3; zeros past n_tok).
template <int TYPE>
__device__ __forceinline__ void gemm_decode_chunk(const ktx_u8* __restrict__ w, ktx_i64 row_bytes,
                                                  int row_base, int n_rows, int c, int tid,
                                                  float v[2][8]) {
  constexpr int kChunks = BlockInfo<TYPE>::elems / 32;  // chunks per block
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = min(row_base + tid / 4 + 64 * half, n_rows - 1);
    decode8<TYPE>(w + row * row_bytes + (c / kChunks) * BlockInfo<TYPE>::bytes, c % kChunks,
                  tid % 4, v[half]);
  }
}

__device__ __forceinline__ void gemm_load_x_chunk(const float* __restrict__ x, ktx_i64 ld_x,
                                                  int tok_base, int n_tok, int c, int tid,
                                                  float v[2][4]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int t = tid / 8 + 32 * half, e0 = (tid % 8) * 4;
    const bool live = tok_base + t < n_tok;
    const float* xt = x + static_cast<ktx_i64>(tok_base + t) * ld_x + 32 * c + e0;
#pragma unroll
    for (int e = 0; e < 4; ++e) v[half][e] = live ? __ldg(xt + e) : 0.0f;
  }
}

template <int TYPE>
__device__ void gemm_tile(const ktx_u8* __restrict__ w, ktx_i64 row_bytes,
                          const float* __restrict__ x, ktx_i64 ld_x, float* __restrict__ y,
                          ktx_i64 ld_y, int n_rows, int k, int n_tok) {
  constexpr int BM = KTX_GEMM_BM, BN = KTX_GEMM_BN, XS = 33;  // x rows padded: no bank conflicts
  __shared__ float w_s[32 * BM];  // [k in chunk][row]
  __shared__ float x_s[BN * XS];  // [token][k in chunk]
  const int tid = threadIdx.x;
  const int row_base = blockIdx.x * BM, tok_base = blockIdx.y * BN;
  // Compute layout: 16 token groups of 4 (tx) by 16 row groups of 8 (ty).
  const int tx = tid % 16, ty = tid / 16;
  float acc[8][4];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  const int n_chunks = k / 32;
  for (int c = 0; c < n_chunks; ++c) {
    float wv8[2][8], xv4[2][4];
    gemm_decode_chunk<TYPE>(w, row_bytes, row_base, n_rows, c, tid, wv8);
    gemm_load_x_chunk(x, ld_x, tok_base, n_tok, c, tid, xv4);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = tid / 4 + 64 * half, part = tid % 4;
      const int t = tid / 8 + 32 * half, e0 = (tid % 8) * 4;
#pragma unroll
      for (int e = 0; e < 8; ++e) w_s[(8 * part + e) * BM + r] = wv8[half][e];
#pragma unroll
      for (int e = 0; e < 4; ++e) x_s[t * XS + e0 + e] = xv4[half][e];
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < 32; ++kk) {
      float wv[8], xv[4];
#pragma unroll
      for (int i = 0; i < 8; ++i) wv[i] = w_s[kk * BM + 8 * ty + i];
#pragma unroll
      for (int j = 0; j < 4; ++j) xv[j] = x_s[(4 * tx + j) * XS + kk];
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(wv[i], xv[j], acc[i][j]);
    }
    __syncthreads();  // the next chunk overwrites the tiles
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int t = tok_base + 4 * tx + j;
    if (t >= n_tok) continue;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int row = row_base + 8 * ty + i;
      if (row < n_rows) y[static_cast<ktx_i64>(t) * ld_y + row] = acc[i][j];
    }
  }
}

// The same tile on tensor cores (ktx_gemm_mma_<type>): per 32-element chunk the block decodes
// the weights as above and rounds them and x to bf16 into shared memory ([row][k] and
// [token][k], rows of 40 bf16: the fragment reads of a warp hit 32 distinct banks); each of the
// 8 warps owns 32 rows x 32 tokens, 2 x 4 mma.m16n8k16 per 16 k, float accumulation. Products
// of bf16-rounded operands (relative rounding 2^-9 per weight and activation), the prefill
// path's allowed rounding (issue 12); the SIMT tile above stays the exact twin.
template <int TYPE>
__device__ void gemm_mma_tile(const ktx_u8* __restrict__ w, ktx_i64 row_bytes,
                              const float* __restrict__ x, ktx_i64 ld_x, float* __restrict__ y,
                              ktx_i64 ld_y, int n_rows, int k, int n_tok) {
  constexpr int BM = KTX_GEMM_BM, BN = KTX_GEMM_BN, KW = 20;  // words (2 bf16) per smem row
  __shared__ unsigned w_s[BM * KW];  // [row][k / 2]
  __shared__ unsigned x_s[BN * KW];  // [token][k / 2]
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int g = lane / 4, t = lane % 4;
  const int row_base = blockIdx.x * BM, tok_base = blockIdx.y * BN;
  const int wr = 32 * (warp % 4), wt = 32 * (warp / 4);  // the warp's rows and tokens in the tile
  float acc[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
  const int n_chunks = k / 32;
  for (int c = 0; c < n_chunks; ++c) {
    float wv8[2][8], xv4[2][4];
    gemm_decode_chunk<TYPE>(w, row_bytes, row_base, n_rows, c, tid, wv8);
    gemm_load_x_chunk(x, ld_x, tok_base, n_tok, c, tid, xv4);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = tid / 4 + 64 * half, part = tid % 4;
      const int tk = tid / 8 + 32 * half, e0 = (tid % 8) * 4;
#pragma unroll
      for (int e = 0; e < 4; ++e)
        w_s[r * KW + 4 * part + e] = ktx_pack_bf16(wv8[half][2 * e], wv8[half][2 * e + 1]);
      x_s[tk * KW + e0 / 2] = ktx_pack_bf16(xv4[half][0], xv4[half][1]);
      x_s[tk * KW + e0 / 2 + 1] = ktx_pack_bf16(xv4[half][2], xv4[half][3]);
    }
    __syncthreads();
#pragma unroll
    for (int ks = 0; ks < 16; ks += 8) {  // words: k 0..15, then 16..31
      unsigned a[2][4], b[4][2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int r0 = wr + 16 * i + g;
        a[i][0] = w_s[r0 * KW + ks + t];
        a[i][1] = w_s[(r0 + 8) * KW + ks + t];
        a[i][2] = w_s[r0 * KW + ks + t + 4];
        a[i][3] = w_s[(r0 + 8) * KW + ks + t + 4];
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int n0 = wt + 8 * j + g;
        b[j][0] = x_s[n0 * KW + ks + t];
        b[j][1] = x_s[n0 * KW + ks + t + 4];
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) ktx_mma_bf16(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = row_base + wr + 16 * i + g + (e >= 2 ? 8 : 0);
        const int tok = tok_base + wt + 8 * j + 2 * t + (e % 2);
        if (row < n_rows && tok < n_tok) y[static_cast<ktx_i64>(tok) * ld_y + row] = acc[i][j][e];
      }
}

// An entry point per type and tile (gemm_tile: ktx_gemm_<type>, gemm_mma_tile:
// ktx_gemm_mma_<type>).
#define KTX_GEMM_ENTRY(NAME, TYPE, TILE)                                                      \
  extern "C" __global__ void __launch_bounds__(KTX_GEMM_THREADS)                             \
      NAME(const ktx_u8* w, ktx_i64 row_bytes, const float* x, ktx_i64 ld_x, float* y,       \
           ktx_i64 ld_y, int n_rows, int k, int n_tok) {                                     \
    KTX_PDL_ENTER();                                                                         \
    TILE<TYPE>(w, row_bytes, x, ld_x, y, ld_y, n_rows, k, n_tok);                            \
  }

KTX_GEMM_ENTRY(ktx_gemm_f32, KTX_F32, gemm_tile)
KTX_GEMM_ENTRY(ktx_gemm_f16, KTX_F16, gemm_tile)
KTX_GEMM_ENTRY(ktx_gemm_bf16, KTX_BF16, gemm_tile)
KTX_GEMM_ENTRY(ktx_gemm_q4_0, KTX_Q4_0, gemm_tile)
KTX_GEMM_ENTRY(ktx_gemm_q5_0, KTX_Q5_0, gemm_tile)
KTX_GEMM_ENTRY(ktx_gemm_q8_0, KTX_Q8_0, gemm_tile)
KTX_GEMM_ENTRY(ktx_gemm_q4_k, KTX_Q4_K, gemm_tile)
KTX_GEMM_ENTRY(ktx_gemm_q5_k, KTX_Q5_K, gemm_tile)
KTX_GEMM_ENTRY(ktx_gemm_q6_k, KTX_Q6_K, gemm_tile)

KTX_GEMM_ENTRY(ktx_gemm_mma_f32, KTX_F32, gemm_mma_tile)
KTX_GEMM_ENTRY(ktx_gemm_mma_f16, KTX_F16, gemm_mma_tile)
KTX_GEMM_ENTRY(ktx_gemm_mma_bf16, KTX_BF16, gemm_mma_tile)
KTX_GEMM_ENTRY(ktx_gemm_mma_q4_0, KTX_Q4_0, gemm_mma_tile)
KTX_GEMM_ENTRY(ktx_gemm_mma_q5_0, KTX_Q5_0, gemm_mma_tile)
KTX_GEMM_ENTRY(ktx_gemm_mma_q8_0, KTX_Q8_0, gemm_mma_tile)
KTX_GEMM_ENTRY(ktx_gemm_mma_q4_k, KTX_Q4_K, gemm_mma_tile)
KTX_GEMM_ENTRY(ktx_gemm_mma_q5_k, KTX_Q5_K, gemm_mma_tile)
KTX_GEMM_ENTRY(ktx_gemm_mma_q6_k, KTX_Q6_K, gemm_mma_tile)
