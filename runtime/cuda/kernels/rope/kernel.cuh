// RoPE on the device, in place: the first n_rot dims of each head vector (from `offset` inside
// the head) rotated by the angle (pos · inv_freq[i]), pos = *d_pos + t_base + t. Normal style
// rotates interleaved pairs (x[2i], x[2i+1]), neox the halves (x[i], x[i + n_rot/2]) — the
// engine's rotate() (runtime/engine/ops.cpp). As there, the angle is a double product and its
// cosine and sine are rounded to float once per position, shared by every head; inv_freq is
// rope_frequencies(cfg) (YaRN already folded in) as float. Grid (tokens, head slices): block
// (t, y) rotates pairs y·KTX_ROPE_THREADS + i (stride KTX_ROPE_THREADS · gridDim.y) of token t's
// n_heads · n_rot / 2 pairs, each block computing the position's cosines and sines itself.
#pragma once

#include "common/pdl.cuh"

#define KTX_ROPE_THREADS 128
#define KTX_ROPE_MAX_HALF 128  // n_rot <= 256

// The position's cosines and sines, cs[i], sn[i] for i < half, spread over the block's threads
// (the caller synchronizes before reading them): the double angle pos · inv_freq[i], rounded
// to float once, as the engine's apply_rope_heads does. ktx_rope and the fused kernels of
// kv_cache/kernel.cuh share it, so they rotate by the same floats.
__device__ __forceinline__ void ktx_rope_table(double pos, const float* inv_freq, int half,
                                               float* cs, float* sn) {
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    double s, c;
    sincos(pos * static_cast<double>(inv_freq[i]), &s, &c);
    cs[i] = static_cast<float>(c);
    sn[i] = static_cast<float>(s);
  }
}

extern "C" __global__ void __launch_bounds__(KTX_ROPE_THREADS)
    ktx_rope(float* x,              // token t's heads start at x + t * ld_x
             long long ld_x,        // floats between tokens
             int n_heads,           // head vectors per token
             long long head_stride, // floats between heads
             int offset,            // first rotated element inside a head
             int n_rot,             // rotated dims (even, <= 2 * KTX_ROPE_MAX_HALF)
             int neox,              // 1: halves, 0: interleaved pairs
             const float* inv_freq, // [n_rot / 2]
             const int* d_pos,      // position of token 0 of the call (device)
             int t_base) {          // this launch's token 0 is token t_base of the call
  KTX_PDL_ENTER();
  __shared__ float cs[KTX_ROPE_MAX_HALF], sn[KTX_ROPE_MAX_HALF];
  const int half = n_rot / 2;
  const int t = blockIdx.x;
  const double pos = static_cast<double>(*d_pos + t_base + t);
  ktx_rope_table(pos, inv_freq, half, cs, sn);
  __syncthreads();
  float* xt = x + t * ld_x + offset;
  for (int e = blockIdx.y * KTX_ROPE_THREADS + threadIdx.x; e < n_heads * half;
       e += KTX_ROPE_THREADS * gridDim.y) {
    const int h = e / half, i = e % half;
    float* a = xt + h * head_stride + (neox ? i : 2 * i);
    float* b = a + (neox ? half : 1);
    const float x0 = *a, x1 = *b;
    *a = x0 * cs[i] - x1 * sn[i];
    *b = x0 * sn[i] + x1 * cs[i];
  }
}
