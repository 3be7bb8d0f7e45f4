// Host emulation of CUDA with warps, for bench/cuda_emu/kernels_emu.cpp: one thread block at a
// time, each CUDA thread a ucontext coroutine. __syncthreads waits until every live thread of
// the block has reached the same barrier count; the warp shuffles wait until all 32 lanes of
// the warp have deposited their value for that shuffle (kernels shuffle with whole warps).
// __shared__ variables become function statics (blocks run one after another).
#pragma once
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include "common/quant/quant.h"

struct EmuDim { unsigned x = 0, y = 0, z = 0; };
inline EmuDim threadIdx, blockIdx, blockDim, gridDim;

namespace emu {
struct Th {
  ucontext_t ctx;
  bool done = false;
  long bar = 0;
  std::vector<uint32_t> shfl;  // the value this lane gave to each of its shuffles
};
inline std::vector<char*> stack_pool;
inline ucontext_t sched;
inline std::vector<Th>* ths = nullptr;
inline int cur = 0;
inline std::function<void()> body;
inline void trampoline() { body(); (*ths)[cur].done = true; }
inline void yield() { swapcontext(&(*ths)[cur].ctx, &sched); }
inline void sync() {
  const long mine = ++(*ths)[cur].bar;
  for (;;) {
    bool ok = true;
    for (auto& t : *ths) ok &= t.done || t.bar >= mine;
    if (ok) return;
    yield();
  }
}
inline uint32_t shfl(uint32_t v, int src_lane) {
  Th& me = (*ths)[cur];
  const size_t seq = me.shfl.size();
  me.shfl.push_back(v);
  const int w0 = cur / 32 * 32;
  for (;;) {
    bool ok = true;
    for (int l = 0; l < 32; ++l) ok &= (*ths)[w0 + l].shfl.size() > seq;
    if (ok) break;
    yield();
  }
  return (*ths)[w0 + src_lane].shfl[seq];
}

template <typename F>
void launch(unsigned gx, unsigned gy, unsigned bx, F f) {
  gridDim.x = gx; gridDim.y = gy; gridDim.z = 1; blockDim.x = bx; blockDim.y = blockDim.z = 1;
  for (unsigned by = 0; by < gy; ++by)
    for (unsigned b = 0; b < gx; ++b) {
      std::vector<Th> t(bx);
      ths = &t;
      body = f;
      for (unsigned i = 0; i < bx; ++i) {
        while (stack_pool.size() <= i) stack_pool.push_back(static_cast<char*>(std::malloc(256 * 1024)));
        getcontext(&t[i].ctx);
        t[i].ctx.uc_stack.ss_sp = stack_pool[i];
        t[i].ctx.uc_stack.ss_size = 256 * 1024;
        t[i].ctx.uc_link = &sched;
        makecontext(&t[i].ctx, trampoline, 0);
      }
      blockIdx.x = b; blockIdx.y = by; blockIdx.z = 0;
      for (long round = 0;; ++round) {
        int live = 0;
        for (unsigned i = 0; i < bx; ++i) {
          if (t[i].done) continue;
          ++live;
          cur = static_cast<int>(i);
          threadIdx.x = i;
          swapcontext(&sched, &t[i].ctx);
        }
        if (live == 0) break;
        if (round > 100000000) { std::fprintf(stderr, "EMU: no progress\n"); std::abort(); }
      }
    }
}
}  // namespace emu

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static
#define __restrict__
struct int4 { int x, y, z, w; };
struct uint4 { unsigned x, y, z, w; };
struct float2 { float x, y; };
struct float4 { float x, y, z, w; };
inline float2 make_float2(float a, float b) { return {a, b}; }
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
inline void __syncthreads() { emu::sync(); }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float ktx_emu_half(unsigned short h) { return ktx::fp16_to_fp32(h); }
template <typename T> inline T emu_shfl_t(T v, int src) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u = emu::shfl(u, src);
  std::memcpy(&v, &u, 4);
  return v;
}
template <typename T> inline T __shfl_xor_sync(unsigned, T v, int m) { return emu_shfl_t(v, (emu::cur % 32) ^ m); }
template <typename T> inline T __shfl_down_sync(unsigned, T v, int d, int width = 32) {
  const int lane = emu::cur % 32;
  return emu_shfl_t(v, lane % width + d < width ? lane + d : lane);
}
inline void __syncwarp() {}
inline int __dp2a_lo(int a, int b, int c) {
  const int16_t a0 = static_cast<int16_t>(a & 0xFFFF), a1 = static_cast<int16_t>(a >> 16);
  const int8_t b0 = static_cast<int8_t>(b & 0xFF), b1 = static_cast<int8_t>((b >> 8) & 0xFF);
  return c + a0 * b0 + a1 * b1;
}
inline int __dp2a_hi(int a, int b, int c) {
  const int16_t a0 = static_cast<int16_t>(a & 0xFFFF), a1 = static_cast<int16_t>(a >> 16);
  const int8_t b2 = static_cast<int8_t>((b >> 16) & 0xFF), b3 = static_cast<int8_t>((b >> 24) & 0xFF);
  return c + a0 * b2 + a1 * b3;
}
inline int __float2int_rn(float x) { return static_cast<int>(std::nearbyint(x)); }
template <typename T> inline T __ldg(const T* p) { return *p; }
using std::fabs; using std::sqrt;
inline float fmaxf(float a, float b) { return std::fmax(a, b); }
inline int min(int a, int b) { return a < b ? a : b; }
