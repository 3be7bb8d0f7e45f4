// KV cache store: n_tok rows of `width` floats become f16 rows (round to nearest even, like
// kv_store_row's fp32_to_fp16) at cache rows *d_pos + t_base + t. Rows at or past n_ctx are
// dropped (the host checks the length before it launches; the device cannot report).
#pragma once

#define KTX_KV_STORE_THREADS 256

extern "C" __global__ void __launch_bounds__(KTX_KV_STORE_THREADS)
    ktx_kv_store(const float* src,       // [n_tok][ld_src]
                 long long ld_src,       // floats between source rows
                 int width,              // elements per row
                 unsigned short* cache,  // f16 bits, [n_ctx][ld_cache]
                 long long ld_cache,     // elements between cache rows
                 const int* d_pos,       // position of token 0 of the call (device)
                 int t_base,             // this launch's row 0 is token t_base of the call
                 int n_ctx) {            // cache rows
  const int t = blockIdx.y;
  const long long row = static_cast<long long>(*d_pos) + t_base + t;
  if (row >= n_ctx) return;
  const int i = blockIdx.x * KTX_KV_STORE_THREADS + threadIdx.x;
  if (i >= width) return;
  unsigned short h;
  asm("{ cvt.rn.f16.f32 %0, %1; }" : "=h"(h) : "f"(src[t * ld_src + i]));
  cache[row * ld_cache + i] = h;
}
