// RMSNorm of n rows: y = x · (1 / sqrt(mean(x²) + eps)) · w, one thread block per row (the
// engine's rms_norm, runtime/engine/ops.cpp). blockDim.x threads (a multiple of 32, at most
// KTX_NORM_THREADS; the host picks about n / 4 of them, so a row of 7168 takes 512 threads
// with 3-4 float4 loads each in flight instead of 28 dependent scalar ones). Sum of squares:
// per thread strided (float4 where x, w, y and their row strides allow, scalar otherwise), then
// a warp shuffle tree and one over the warps' sums.
#pragma once

#include "common/pdl.cuh"

#define KTX_NORM_THREADS 512

// The block's 1 / sqrt(Σ s / n + eps), s each thread's partial sum of squares: a warp shuffle
// tree, then the warps' sums in order, in every thread (blockDim.x a multiple of 32).
__device__ __forceinline__ float ktx_rms_finish(float s, int n, float eps) {
  __shared__ float part[KTX_NORM_THREADS / 32];
  const int nt = blockDim.x, tid = threadIdx.x;
  for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (tid % 32 == 0) part[tid / 32] = s;
  __syncthreads();
  float tot = 0.0f;
  for (int i = 0; i < nt / 32; ++i) tot += part[i];  // every thread, the same order
  return 1.0f / sqrtf(tot / static_cast<float>(n) + eps);
}

// A thread's share of Σ v² for element (float4 where vec) i of a row: the one order every
// kernel here uses (strided by blockDim.x, the four lanes of a float4 in turn).
__device__ __forceinline__ float ktx_sq4(float s, const float4& v) {
  s = fmaf(v.x, v.x, s);
  s = fmaf(v.y, v.y, s);
  s = fmaf(v.z, v.z, s);
  return fmaf(v.w, v.w, s);
}

// 1 / sqrt(mean(xr[0..n)²) + eps) of one row, in every thread of the block (blockDim.x
// threads, a multiple of 32; vec: float4 loads, xr 16-byte aligned and n % 4 == 0). The sum's
// order depends only on n and blockDim.x, so every kernel that normalizes through it with the
// same thread count rounds alike (ktx_mla_kv_store, kv_cache/kernel.cuh).
__device__ __forceinline__ float ktx_rms_inv(const float* __restrict__ xr, int n, float eps,
                                             bool vec) {
  const int nt = blockDim.x, tid = threadIdx.x;
  float s = 0.0f;
  if (vec) {
    const float4* x4 = reinterpret_cast<const float4*>(xr);
#pragma unroll 4
    for (int i = tid; i < n / 4; i += nt) s = ktx_sq4(s, x4[i]);
  } else {
    for (int i = tid; i < n; i += nt) s = fmaf(xr[i], xr[i], s);
  }
  return ktx_rms_finish(s, n, eps);
}

extern "C" __global__ void __launch_bounds__(KTX_NORM_THREADS)
    ktx_rms_norm(const float* x, long long ld_x, const float* w, float* y, long long ld_y, int n,
                 float eps) {
  KTX_PDL_ENTER();
  const int nt = blockDim.x, tid = threadIdx.x;
  const float* xr = x + blockIdx.x * ld_x;
  float* yr = y + blockIdx.x * ld_y;
  const bool vec = n % 4 == 0 && ld_x % 4 == 0 && ld_y % 4 == 0 &&
                   ((reinterpret_cast<unsigned long long>(x) | reinterpret_cast<unsigned long long>(y) |
                     reinterpret_cast<unsigned long long>(w)) & 15) == 0;
  const float inv = ktx_rms_inv(xr, n, eps, vec);
  if (vec) {
    const float4* x4 = reinterpret_cast<const float4*>(xr);
    const float4* w4 = reinterpret_cast<const float4*>(w);
    float4* y4 = reinterpret_cast<float4*>(yr);
#pragma unroll 4
    for (int i = tid; i < n / 4; i += nt) {
      const float4 v = x4[i], g = w4[i];
      y4[i] = make_float4(v.x * inv * g.x, v.y * inv * g.y, v.z * inv * g.z, v.w * inv * g.w);
    }
  } else {
    for (int i = tid; i < n; i += nt) yr[i] = xr[i] * inv * w[i];
  }
}

// The residual add and the next RMSNorm in one pass: sum = a + b (written), y = RMSNorm(sum) ·
// w, for n_rows rows of n (rows n apart in a, b and sum, ld_y apart in y). The same floats as
// ktx_add then ktx_rms_norm with the same thread count: each thread squares the sums it wrote
// in ktx_rms_inv's order and reads back only its own elements.
extern "C" __global__ void __launch_bounds__(KTX_NORM_THREADS)
    ktx_add_rms_norm(const float* a, const float* b, float* sum, const float* w, float* y,
                     long long ld_y, int n, float eps) {
  KTX_PDL_ENTER();
  const int nt = blockDim.x, tid = threadIdx.x;
  const long long off = static_cast<long long>(blockIdx.x) * n;
  const float *ar = a + off, *br = b + off;
  float* sr = sum + off;
  float* yr = y + blockIdx.x * ld_y;
  const bool vec = n % 4 == 0 && ld_y % 4 == 0 &&
                   ((reinterpret_cast<unsigned long long>(a) | reinterpret_cast<unsigned long long>(b) |
                     reinterpret_cast<unsigned long long>(sum) | reinterpret_cast<unsigned long long>(y) |
                     reinterpret_cast<unsigned long long>(w)) & 15) == 0;
  float s = 0.0f;
  if (vec) {
    const float4 *a4 = reinterpret_cast<const float4*>(ar), *b4 = reinterpret_cast<const float4*>(br);
    float4* s4 = reinterpret_cast<float4*>(sr);
#pragma unroll 4
    for (int i = tid; i < n / 4; i += nt) {
      const float4 u = a4[i], v = b4[i];
      const float4 t = make_float4(u.x + v.x, u.y + v.y, u.z + v.z, u.w + v.w);
      s4[i] = t;
      s = ktx_sq4(s, t);
    }
  } else {
    for (int i = tid; i < n; i += nt) {
      const float t = ar[i] + br[i];
      sr[i] = t;
      s = fmaf(t, t, s);
    }
  }
  const float inv = ktx_rms_finish(s, n, eps);
  if (vec) {
    const float4* s4 = reinterpret_cast<const float4*>(sr);
    const float4* w4 = reinterpret_cast<const float4*>(w);
    float4* y4 = reinterpret_cast<float4*>(yr);
#pragma unroll 4
    for (int i = tid; i < n / 4; i += nt) {
      const float4 v = s4[i], g = w4[i];
      y4[i] = make_float4(v.x * inv * g.x, v.y * inv * g.y, v.z * inv * g.z, v.w * inv * g.w);
    }
  } else {
    for (int i = tid; i < n; i += nt) yr[i] = sr[i] * inv * w[i];
  }
}
