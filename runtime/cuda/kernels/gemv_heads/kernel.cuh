// Per-head GEMVs on GGUF blocks for MLA's up-projections, all heads in one launch.
//
// ktx_gemv_heads_<type>: the GEMV family's row kernel (gemv/kernel.cuh) with head h =
// blockIdx.y reading weights at w + h·head_w bytes, input at x + h·head_x and writing
// y + h·head_y: the split attn_k_b (q_abs = W_kᵀ-rows · q_nope), attn_v_b and the v rows of
// attn_kv_b (out = W_v · o_lat).
//
// ktx_gemv_t_heads_<type>: the transposed product for attn_kv_b's k rows (the engine's
// matmul_transposed): y[t][h·head_y + c] = Σ_{n < n_in} W_h[n][c] · x[t][h·head_x + n], where
// W_h's rows start at w + h·head_w bytes, row_bytes apart, n_out elements each. A thread owns
// 8 adjacent columns (decode8 of one 32-element chunk part) and walks the n_in rows in order,
// so its sums run in the engine's order.
#pragma once

#include "common/pdl.cuh"
#include "common/quant.cuh"
#include "gemv/kernel.cuh"

#define KTX_GEMV_T_THREADS 64  // 512 columns per block

#define KTX_GEMV_HEADS_ENTRY(NAME, TYPE)                                                        \
  extern "C" __global__ void __launch_bounds__(32 * KTX_GEMV_WARPS)                            \
      NAME(const ktx_u8* w, ktx_i64 head_w, ktx_i64 row_bytes, const float* x, ktx_i64 ld_x,   \
           ktx_i64 head_x, float* y, ktx_i64 ld_y, ktx_i64 head_y, int n_rows, int k,          \
           int n_tok) {                                                                        \
    KTX_PDL_ENTER();                                                                           \
    const int h = blockIdx.y;                                                                  \
    gemv_rows<TYPE>(w + h * head_w, row_bytes, x + h * head_x, ld_x, y + h * head_y, ld_y,     \
                    n_rows, k, n_tok);                                                         \
  }

template <int TYPE>
__device__ void gemv_t_heads(const ktx_u8* __restrict__ w, ktx_i64 head_w, ktx_i64 row_bytes,
                             const float* __restrict__ x, ktx_i64 ld_x, ktx_i64 head_x,
                             float* __restrict__ y, ktx_i64 ld_y, ktx_i64 head_y, int n_in,
                             int n_out, int n_tok) {
  const int h = blockIdx.y;
  const int c0 = 8 * (blockIdx.x * KTX_GEMV_T_THREADS + threadIdx.x);
  if (c0 >= n_out) return;
  constexpr int kChunks = BlockInfo<TYPE>::elems / 32;
  const int chunk = c0 / 32, part = (c0 % 32) / 8;
  const ktx_u8* wh = w + h * head_w + (chunk / kChunks) * BlockInfo<TYPE>::bytes;
  const float* xh = x + h * head_x;
  float acc[KTX_GEMV_MAX_TOKENS][8];
  for (int t = 0; t < KTX_GEMV_MAX_TOKENS; ++t)
    for (int i = 0; i < 8; ++i) acc[t][i] = 0.0f;
  float v[8];
#pragma unroll 4
  for (int n = 0; n < n_in; ++n) {
    decode8<TYPE>(wh + n * row_bytes, chunk % kChunks, part, v);
    for (int t = 0; t < KTX_GEMV_MAX_TOKENS; ++t) {
      if (t >= n_tok) break;
      const float s = __ldg(xh + t * ld_x + n);
      for (int i = 0; i < 8; ++i) acc[t][i] = fmaf(s, v[i], acc[t][i]);
    }
  }
  for (int t = 0; t < KTX_GEMV_MAX_TOKENS; ++t) {
    if (t >= n_tok) break;
    float* yt = y + t * ld_y + h * head_y + c0;
    for (int i = 0; i < 8; ++i) yt[i] = acc[t][i];
  }
}

#define KTX_GEMV_T_HEADS_ENTRY(NAME, TYPE)                                                      \
  extern "C" __global__ void __launch_bounds__(KTX_GEMV_T_THREADS)                             \
      NAME(const ktx_u8* w, ktx_i64 head_w, ktx_i64 row_bytes, const float* x, ktx_i64 ld_x,   \
           ktx_i64 head_x, float* y, ktx_i64 ld_y, ktx_i64 head_y, int n_in, int n_out,        \
           int n_tok) {                                                                        \
    KTX_PDL_ENTER();                                                                           \
    gemv_t_heads<TYPE>(w, head_w, row_bytes, x, ld_x, head_x, y, ld_y, head_y, n_in, n_out,    \
                       n_tok);                                                                 \
  }

KTX_GEMV_HEADS_ENTRY(ktx_gemv_heads_f32, KTX_F32)
KTX_GEMV_HEADS_ENTRY(ktx_gemv_heads_f16, KTX_F16)
KTX_GEMV_HEADS_ENTRY(ktx_gemv_heads_bf16, KTX_BF16)
KTX_GEMV_HEADS_ENTRY(ktx_gemv_heads_q4_0, KTX_Q4_0)
KTX_GEMV_HEADS_ENTRY(ktx_gemv_heads_q5_0, KTX_Q5_0)
KTX_GEMV_HEADS_ENTRY(ktx_gemv_heads_q8_0, KTX_Q8_0)
KTX_GEMV_HEADS_ENTRY(ktx_gemv_heads_q4_k, KTX_Q4_K)
KTX_GEMV_HEADS_ENTRY(ktx_gemv_heads_q5_k, KTX_Q5_K)
KTX_GEMV_HEADS_ENTRY(ktx_gemv_heads_q6_k, KTX_Q6_K)

KTX_GEMV_T_HEADS_ENTRY(ktx_gemv_t_heads_f32, KTX_F32)
KTX_GEMV_T_HEADS_ENTRY(ktx_gemv_t_heads_f16, KTX_F16)
KTX_GEMV_T_HEADS_ENTRY(ktx_gemv_t_heads_bf16, KTX_BF16)
KTX_GEMV_T_HEADS_ENTRY(ktx_gemv_t_heads_q4_0, KTX_Q4_0)
KTX_GEMV_T_HEADS_ENTRY(ktx_gemv_t_heads_q5_0, KTX_Q5_0)
KTX_GEMV_T_HEADS_ENTRY(ktx_gemv_t_heads_q8_0, KTX_Q8_0)
KTX_GEMV_T_HEADS_ENTRY(ktx_gemv_t_heads_q4_k, KTX_Q4_K)
KTX_GEMV_T_HEADS_ENTRY(ktx_gemv_t_heads_q5_k, KTX_Q5_K)
KTX_GEMV_T_HEADS_ENTRY(ktx_gemv_t_heads_q6_k, KTX_Q6_K)
