// Bias add broadcast over tokens: x[t * ld_x + i] += bias[i] (qwen2moe's q/k/v biases).
#pragma once

#include "common/pdl.cuh"

#define KTX_BIAS_THREADS 256

extern "C" __global__ void __launch_bounds__(KTX_BIAS_THREADS)
    ktx_add_bias(float* x,           // [n_tok][ld_x], updated in place
                 long long ld_x,     // floats between tokens
                 const float* bias,  // [n]
                 int n) {            // elements per token; one grid row (blockIdx.y) per token
  KTX_PDL_ENTER();
  const int i = blockIdx.x * KTX_BIAS_THREADS + threadIdx.x;
  if (i < n) x[blockIdx.y * ld_x + i] += bias[i];
}
