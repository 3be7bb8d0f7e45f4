// CPU emulation of the CUDA execution model, so the GPU unit tests run without a GPU (a lab
// tool: dev/cuda_emu/build.sh). One block at a time, its threads as ucontext fibers on one OS
// thread; __shared__ = static (one block at a time), __syncthreads / __syncwarp / shuffles are
// barriers that switch fibers (a divergent barrier aborts, naming it). It checks indexing,
// masking and barrier logic; not timing, memory ordering races, alignment or shared-memory limits.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <algorithm>

struct EmuDim { unsigned x = 1, y = 1, z = 1; };
extern EmuDim threadIdx, blockIdx, blockDim, gridDim;

void emu_block_barrier();
void emu_warp_barrier();
float* emu_warp_slots();  // per thread slot array [blockDim.x]

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static

struct float2 { float x, y; };
inline float2 make_float2(float a, float b) { return {a, b}; }
inline int min(int a, int b) { return a < b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
template <typename T> inline T __ldg(const T* p) { return *p; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float __int_as_float(int u) { float f; std::memcpy(&f, &u, 4); return f; }
inline void sincos(double x, double* s, double* c) { *s = std::sin(x); *c = std::cos(x); }
#include <math.h>

inline void __syncthreads() { emu_block_barrier(); }
// One fiber runs at a time, so a read-modify-write is atomic as written.
inline int atomicAdd(int* p, int v) { const int old = *p; *p = old + v; return old; }
inline void __syncwarp(unsigned = 0xffffffffu) { emu_warp_barrier(); }
inline float emu_shfl(float v, int src_lane) {
  float* s = emu_warp_slots();
  const unsigned tid = threadIdx.x, base = tid / 32 * 32;
  s[tid] = v;
  emu_warp_barrier();
  const float r = s[base + src_lane];
  emu_warp_barrier();
  return r;
}
inline float __shfl_xor_sync(unsigned, float v, int o) { return emu_shfl(v, (threadIdx.x % 32) ^ o); }
inline float __shfl_down_sync(unsigned, float v, int o, int width = 32) {
  const int l = threadIdx.x % 32;
  return emu_shfl(v, l % width + o < width ? l + o : l);
}
struct int4 { int x, y, z, w; };
struct uint4 { unsigned x, y, z, w; };
struct float4 { float x, y, z, w; };
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
inline int __float2int_rn(float f) { return static_cast<int>(std::nearbyint(f)); }
// dp2a: two int16 lanes of a times two signed bytes of b (lo: bytes 0, 1; hi: bytes 2, 3).
inline int emu_dp2a(int a, int b, int c, int byte0) {
  const int a0 = static_cast<short>(a & 0xFFFF), a1 = static_cast<short>((a >> 16) & 0xFFFF);
  const int b0 = static_cast<signed char>((b >> (8 * byte0)) & 0xFF);
  const int b1 = static_cast<signed char>((b >> (8 * byte0 + 8)) & 0xFF);
  return c + a0 * b0 + a1 * b1;
}
inline int __dp2a_lo(int a, int b, int c) { return emu_dp2a(a, b, c, 0); }
inline int __dp2a_hi(int a, int b, int c) { return emu_dp2a(a, b, c, 2); }
