// Element-wise ops of the decode step over n floats: SwiGLU's silu(g)·u and the residual add.
#pragma once

#include "common/pdl.cuh"

extern "C" __global__ void ktx_silu_mul(const float* g, const float* u, float* y, long long n) {
  KTX_PDL_ENTER();
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

extern "C" __global__ void ktx_add(const float* a, const float* b, float* y, long long n) {
  KTX_PDL_ENTER();
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = a[i] + b[i];
}
