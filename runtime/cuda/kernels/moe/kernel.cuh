// Routed experts of a MoE layer on the GPU, for long prefill calls whose layer's expert weights
// the plan streams into device memory (issue 12; runtime/cuda/moe.h): the n = n_tok * top_k
// (token, choice) pairs grouped by expert, each expert's rows through the prefill GEMM
// (gemm/kernel.cuh) on its own weights, and the choices summed back per token.
//
//   ktx_moe_sort:    one block. counts per expert, offsets[e] .. offsets[e + 1] = the positions
//                    of expert e's pairs; perm[pos] = the pair (t * top_k + j) at a position,
//                    inv[pair] = its position (-1: an id outside [0, n_expert), left out).
//                    Pairs land in an expert's range in no fixed order: every output row is its
//                    own product, so the order changes nothing downstream.
//   ktx_moe_gather:  xg[pos] = x[perm[pos] / top_k] (rows of k floats).
//   ktx_moe_gemm_T:  the GEMM of each expert over its range: blockIdx.z = expert, its weights
//                    at w + e * expert_bytes, rows offsets[e].. of x and y; blocks past the
//                    expert's tokens return at once (the grid covers max_tok tokens per expert).
//   ktx_moe_combine: out[t] = sum over j in order of weight[t * top_k + j] * y[inv[t*top_k+j]].
#pragma once

#include "common/pdl.cuh"
#include "gemm/kernel.cuh"

#define KTX_MOE_SORT_THREADS 256
#define KTX_MOE_MAX_EXPERTS 1024

extern "C" __global__ void __launch_bounds__(KTX_MOE_SORT_THREADS)
    ktx_moe_sort(const int* ids, int n, int n_expert, int* offsets, int* perm, int* inv) {
  KTX_PDL_ENTER();
  __shared__ int cursor[KTX_MOE_MAX_EXPERTS];
  const int tid = threadIdx.x;
  for (int e = tid; e < n_expert; e += blockDim.x) cursor[e] = 0;
  __syncthreads();
  for (int i = tid; i < n; i += blockDim.x) {
    const int e = ids[i];
    if (e >= 0 && e < n_expert) atomicAdd(&cursor[e], 1);
  }
  __syncthreads();
  if (tid == 0) {
    int sum = 0;
    for (int e = 0; e < n_expert; ++e) {
      const int c = cursor[e];
      offsets[e] = sum;
      cursor[e] = sum;
      sum += c;
    }
    offsets[n_expert] = sum;
  }
  __syncthreads();
  for (int i = tid; i < n; i += blockDim.x) {
    const int e = ids[i];
    if (e >= 0 && e < n_expert) {
      const int pos = atomicAdd(&cursor[e], 1);
      perm[pos] = i;
      inv[i] = pos;
    } else {
      inv[i] = -1;
    }
  }
}

// Grid (n pairs), 256 threads: one row of k floats per block.
extern "C" __global__ void ktx_moe_gather(const float* x, ktx_i64 ld_x, const int* perm,
                                          const int* offsets, int n_expert, int top_k, int k,
                                          float* xg) {
  KTX_PDL_ENTER();
  const int pos = blockIdx.x;
  if (pos >= offsets[n_expert]) return;
  const float* src = x + static_cast<ktx_i64>(perm[pos] / top_k) * ld_x;
  float* dst = xg + static_cast<ktx_i64>(pos) * k;
  for (int i = threadIdx.x; i < k; i += blockDim.x) dst[i] = src[i];
}

// Per type and tile: the float tile (ktx_moe_gemm_<type>) and the tensor-core one
// (gemm_mma_tile, bf16-rounded operands, float sums: ktx_moe_gemm_mma_<type>).
#define KTX_MOE_GEMM_ENTRY(NAME, TYPE, TILE)                                                  \
  extern "C" __global__ void __launch_bounds__(KTX_GEMM_THREADS)                             \
      NAME(const ktx_u8* w, ktx_i64 expert_bytes, ktx_i64 row_bytes, const float* x,         \
           ktx_i64 ld_x, float* y, ktx_i64 ld_y, int n_rows, int k, const int* offsets) {    \
    KTX_PDL_ENTER();                                                                         \
    const int e = blockIdx.z, first = offsets[e], n_tok = offsets[e + 1] - first;            \
    if (static_cast<int>(blockIdx.y) * KTX_GEMM_BN >= n_tok) return;                         \
    TILE<TYPE>(w + e * expert_bytes, row_bytes, x + first * ld_x, ld_x, y + first * ld_y,    \
               ld_y, n_rows, k, n_tok);                                                      \
  }

KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_f32, KTX_F32, gemm_tile)
KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_f16, KTX_F16, gemm_tile)
KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_bf16, KTX_BF16, gemm_tile)
KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_q4_0, KTX_Q4_0, gemm_tile)
KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_q5_0, KTX_Q5_0, gemm_tile)
KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_q8_0, KTX_Q8_0, gemm_tile)
KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_q4_k, KTX_Q4_K, gemm_tile)
KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_q5_k, KTX_Q5_K, gemm_tile)
KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_q6_k, KTX_Q6_K, gemm_tile)

KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_mma_f32, KTX_F32, gemm_mma_tile)
KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_mma_f16, KTX_F16, gemm_mma_tile)
KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_mma_bf16, KTX_BF16, gemm_mma_tile)
KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_mma_q4_0, KTX_Q4_0, gemm_mma_tile)
KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_mma_q5_0, KTX_Q5_0, gemm_mma_tile)
KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_mma_q8_0, KTX_Q8_0, gemm_mma_tile)
KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_mma_q4_k, KTX_Q4_K, gemm_mma_tile)
KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_mma_q5_k, KTX_Q5_K, gemm_mma_tile)
KTX_MOE_GEMM_ENTRY(ktx_moe_gemm_mma_q6_k, KTX_Q6_K, gemm_mma_tile)

// Grid (ceil(d / 256), n_tok), 256 threads.
extern "C" __global__ void ktx_moe_combine(const float* y, const int* inv, const float* weights,
                                           int top_k, int d, float* out, ktx_i64 ld_out) {
  KTX_PDL_ENTER();
  const int t = blockIdx.y, i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= d) return;
  float acc = 0.0f;
  for (int j = 0; j < top_k; ++j) {
    const int pos = inv[t * top_k + j];
    if (pos >= 0) acc = fmaf(weights[t * top_k + j], y[static_cast<ktx_i64>(pos) * d + i], acc);
  }
  out[static_cast<ktx_i64>(t) * ld_out + i] = acc;
}
