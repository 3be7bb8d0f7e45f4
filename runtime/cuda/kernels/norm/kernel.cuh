// RMSNorm of n rows: y = x · (1 / sqrt(mean(x²) + eps)) · w, one thread block per row (the
// engine's rms_norm, runtime/engine/ops.cpp). blockDim.x threads (a multiple of 32, at most
// KTX_NORM_THREADS; the host picks about n / 4 of them, so a row of 7168 takes 512 threads
// with 3-4 float4 loads each in flight instead of 28 dependent scalar ones). Sum of squares:
// per thread strided (float4 where x, w, y and their row strides allow, scalar otherwise), then
// a warp shuffle tree and one over the warps' sums.
#pragma once

#define KTX_NORM_THREADS 512

// 1 / sqrt(mean(xr[0..n)²) + eps) of one row, in every thread of the block (blockDim.x
// threads, a multiple of 32; vec: float4 loads, xr 16-byte aligned and n % 4 == 0). The sum's
// order depends only on n and blockDim.x, so every kernel that normalizes through it with the
// same thread count rounds alike (ktx_mla_kv_store, kv_cache/kernel.cuh).
__device__ __forceinline__ float ktx_rms_inv(const float* __restrict__ xr, int n, float eps,
                                             bool vec) {
  __shared__ float part[KTX_NORM_THREADS / 32];
  const int nt = blockDim.x, tid = threadIdx.x;
  float s = 0.0f;
  if (vec) {
    const float4* x4 = reinterpret_cast<const float4*>(xr);
#pragma unroll 4
    for (int i = tid; i < n / 4; i += nt) {
      const float4 v = x4[i];
      s = fmaf(v.x, v.x, s);
      s = fmaf(v.y, v.y, s);
      s = fmaf(v.z, v.z, s);
      s = fmaf(v.w, v.w, s);
    }
  } else {
    for (int i = tid; i < n; i += nt) s = fmaf(xr[i], xr[i], s);
  }
  for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (tid % 32 == 0) part[tid / 32] = s;
  __syncthreads();
  float tot = 0.0f;
  for (int i = 0; i < nt / 32; ++i) tot += part[i];  // every thread, the same order
  return 1.0f / sqrtf(tot / static_cast<float>(n) + eps);
}

extern "C" __global__ void __launch_bounds__(KTX_NORM_THREADS)
    ktx_rms_norm(const float* x, long long ld_x, const float* w, float* y, long long ld_y, int n,
                 float eps) {
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
