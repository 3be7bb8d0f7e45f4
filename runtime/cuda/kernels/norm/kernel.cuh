// RMSNorm of n rows: y = x · (1 / sqrt(mean(x²) + eps)) · w, one thread block per row (the
// engine's rms_norm, runtime/engine/ops.cpp). Sum of squares: per thread strided, then a
// shared-memory tree.
#pragma once

#define KTX_NORM_THREADS 256

extern "C" __global__ void __launch_bounds__(KTX_NORM_THREADS)
    ktx_rms_norm(const float* x, long long ld_x, const float* w, float* y, long long ld_y, int n,
                 float eps) {
  __shared__ float part[KTX_NORM_THREADS];
  const float* xr = x + blockIdx.x * ld_x;
  float* yr = y + blockIdx.x * ld_y;
  float s = 0.0f;
  for (int i = threadIdx.x; i < n; i += KTX_NORM_THREADS) s = fmaf(xr[i], xr[i], s);
  part[threadIdx.x] = s;
  __syncthreads();
  for (int o = KTX_NORM_THREADS / 2; o > 0; o /= 2) {
    if (threadIdx.x < o) part[threadIdx.x] += part[threadIdx.x + o];
    __syncthreads();
  }
  const float inv = 1.0f / sqrtf(part[0] / static_cast<float>(n) + eps);
  for (int i = threadIdx.x; i < n; i += KTX_NORM_THREADS) yr[i] = xr[i] * inv * w[i];
}
