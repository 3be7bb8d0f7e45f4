// KV cache store: n_tok rows of `width` floats become f16 rows (round to nearest even, like
// kv_store_row's fp32_to_fp16) at cache rows *d_pos + t_base + t. Rows at or past n_ctx are
// dropped (the host checks the length before it launches; the device cannot report).
#pragma once

#include "common/pdl.cuh"

#define KTX_KV_STORE_THREADS 256

// f32 -> f16 bits, round to nearest even.
__device__ __forceinline__ unsigned short ktx_f2h_rn(float f) {
  unsigned short h;
  asm("{ cvt.rn.f16.f32 %0, %1; }" : "=h"(h) : "f"(f));
  return h;
}

extern "C" __global__ void __launch_bounds__(KTX_KV_STORE_THREADS)
    ktx_kv_store(const float* src,       // [n_tok][ld_src]
                 long long ld_src,       // floats between source rows
                 int width,              // elements per row
                 unsigned short* cache,  // f16 bits, [n_ctx][ld_cache]
                 long long ld_cache,     // elements between cache rows
                 const int* d_pos,       // position of token 0 of the call (device)
                 int t_base,             // this launch's row 0 is token t_base of the call
                 int n_ctx) {            // cache rows
  KTX_PDL_ENTER();
  const int t = blockIdx.y;
  const long long row = static_cast<long long>(*d_pos) + t_base + t;
  if (row >= n_ctx) return;
  const int i = blockIdx.x * KTX_KV_STORE_THREADS + threadIdx.x;
  if (i >= width) return;
  cache[row * ld_cache + i] = ktx_f2h_rn(src[t * ld_src + i]);
}

// MLA's cache rows of one call in one launch (the kv_a_mqa output [n_tok][ld_kv] = latent
// [kvl] then k_pe [rope] per token): latent row = f16(RMSNorm(latent) · norm_w), k_pe row =
// f16(RoPE(k_pe)) at cache row *d_pos + t_base + t. The same arithmetic as ktx_rms_norm
// (ktx_rms_inv with the host's thread count for kvl), ktx_rope (one head, offset 0) and
// ktx_kv_store one after another, without the float round trips and three launches between.
// Grid n_tok, blockDim.x = the norm's thread count for kvl (whole warps, >= rope / 2).
#include "norm/kernel.cuh"
#include "rope/kernel.cuh"

extern "C" __global__ void __launch_bounds__(KTX_NORM_THREADS)
    ktx_mla_kv_store(const float* kv, long long ld_kv, int kvl, int rope, const float* norm_w,
                     float eps, int neox, const float* inv_freq, unsigned short* latent,
                     unsigned short* k_pe, const int* d_pos, int t_base, int n_ctx) {
  KTX_PDL_ENTER();
  __shared__ float cs[KTX_ROPE_MAX_HALF], sn[KTX_ROPE_MAX_HALF];
  const int t = blockIdx.x, tid = threadIdx.x, nt = blockDim.x;
  const float* xr = kv + t * ld_kv;
  const long long row = static_cast<long long>(*d_pos) + t_base + t;
  const double pos = static_cast<double>(*d_pos + t_base + t);
  const int half = rope / 2;
  ktx_rope_table(pos, inv_freq, half, cs, sn);
  const bool vec = kvl % 4 == 0 && ld_kv % 4 == 0 &&
                   ((reinterpret_cast<unsigned long long>(kv) |
                     reinterpret_cast<unsigned long long>(norm_w)) & 15) == 0;
  const float inv = ktx_rms_inv(xr, kvl, eps, vec);  // its __syncthreads also publishes cs, sn
  if (row >= n_ctx) return;
  unsigned short* lr = latent + row * kvl;
  for (int i = tid; i < kvl; i += nt) {
    lr[i] = ktx_f2h_rn(xr[i] * inv * norm_w[i]);
  }
  const float* pe = xr + kvl;
  unsigned short* pr = k_pe + row * rope;
  for (int i = tid; i < half; i += nt) {
    const int ia = neox ? i : 2 * i, ib = ia + (neox ? half : 1);
    const float x0 = pe[ia], x1 = pe[ib];
    const float a = x0 * cs[i] - x1 * sn[i];
    const float b = x0 * sn[i] + x1 * cs[i];
    pr[ia] = ktx_f2h_rn(a);
    pr[ib] = ktx_f2h_rn(b);
  }
}

// GQA's per-head steps after the projections, one launch for what add_bias, the per-head
// rms_norm (qk-norm), rope and kv_store do one after another. Block (t, h) takes head h of
// token t: x row [hd] at x + t·ld_x + h·hd, plus bias (optional), RMSNorm · norm_w (optional;
// ktx_rms_inv with the host's thread count for hd, so the sums round as ktx_rms_norm's), RoPE
// of its first n_rot dims at position *d_pos + t_base + t; then either back into x (queries)
// or f16 into cache row pos (keys; x is left as it was). With v (keys only), block (t, h) also
// stores v head h ([dv] at v + t·ld_v + h·dv, plus v_bias) into v_cache. blockDim.x: the norm's
// thread count for hd (>= n_rot / 2, <= hd).
#define KTX_HEAD_MAX 256  // head dims up to 256

extern "C" __global__ void __launch_bounds__(KTX_NORM_THREADS)
    ktx_head_norm_rope(float* x, long long ld_x, int hd, const float* bias, const float* norm_w,
                       float eps, int n_rot, int neox, const float* inv_freq, const int* d_pos,
                       int t_base, unsigned short* cache, int n_ctx, const float* v,
                       long long ld_v, int dv, const float* v_bias, unsigned short* v_cache) {
  KTX_PDL_ENTER();
  __shared__ float4 row4[KTX_HEAD_MAX / 4];  // 16-byte aligned for ktx_rms_inv's float4 loads
  float* row = reinterpret_cast<float*>(row4);
  __shared__ float cs[KTX_ROPE_MAX_HALF], sn[KTX_ROPE_MAX_HALF];
  const int t = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, nt = blockDim.x;
  const int n_heads = gridDim.y;
  float* xr = x + t * ld_x + static_cast<long long>(h) * hd;
  const double pos = static_cast<double>(*d_pos + t_base + t);
  const int half = n_rot / 2;
  ktx_rope_table(pos, inv_freq, half, cs, sn);
  for (int i = tid; i < hd; i += nt) {
    float e = xr[i];
    if (bias) e += bias[h * hd + i];
    row[i] = e;
  }
  __syncthreads();
  if (norm_w) {
    const bool vec = hd % 4 == 0 && (reinterpret_cast<unsigned long long>(norm_w) & 15) == 0;
    const float inv = ktx_rms_inv(row, hd, eps, vec);
    __syncthreads();  // every thread has read row before it changes
    for (int i = tid; i < hd; i += nt) row[i] = row[i] * inv * norm_w[i];
  }
  __syncthreads();
  for (int i = tid; i < half; i += nt) {
    const int ia = neox ? i : 2 * i, ib = ia + (neox ? half : 1);
    const float x0 = row[ia], x1 = row[ib];
    row[ia] = x0 * cs[i] - x1 * sn[i];
    row[ib] = x0 * sn[i] + x1 * cs[i];
  }
  __syncthreads();
  const long long r = static_cast<long long>(*d_pos) + t_base + t;
  if (!cache) {
    for (int i = tid; i < hd; i += nt) xr[i] = row[i];
    return;
  }
  if (r >= n_ctx) return;
  unsigned short* kr = cache + r * (static_cast<long long>(n_heads) * hd) + static_cast<long long>(h) * hd;
  for (int i = tid; i < hd; i += nt) kr[i] = ktx_f2h_rn(row[i]);
  if (!v) return;
  const float* vr = v + t * ld_v + static_cast<long long>(h) * dv;
  unsigned short* vc = v_cache + r * (static_cast<long long>(n_heads) * dv) + static_cast<long long>(h) * dv;
  for (int i = tid; i < dv; i += nt) {
    float e = vr[i];
    if (v_bias) e += v_bias[h * dv + i];
    vc[i] = ktx_f2h_rn(e);
  }
}
