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
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
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
// mma.sync.m16n8k16 bf16 (kernels/common/mma.cuh): every lane's fragments into its slots, a
// warp barrier, then each lane sums its four outputs over k (in order) from the whole warp's.
unsigned* emu_mma_slots();  // 6 words per thread
inline float emu_bf16(unsigned w, bool hi) {
  const unsigned u = (hi ? w >> 16 : w & 0xFFFFu) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline void emu_mma_bf16_16816(const unsigned a[4], const unsigned b[2], float d[4]) {
  unsigned* s = emu_mma_slots();
  const unsigned tid = threadIdx.x, base = tid / 32 * 32, lane = tid % 32;
  for (int i = 0; i < 4; ++i) s[tid * 6 + i] = a[i];
  s[tid * 6 + 4] = b[0];
  s[tid * 6 + 5] = b[1];
  emu_warp_barrier();
  auto A = [&](int r, int k) {
    const unsigned owner = base + (r % 8) * 4 + (k % 8) / 2;
    return emu_bf16(s[owner * 6 + (r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)], k % 2);
  };
  auto B = [&](int k, int n) {
    const unsigned owner = base + n * 4 + (k % 8) / 2;
    return emu_bf16(s[owner * 6 + 4 + (k >= 8 ? 1 : 0)], k % 2);
  };
  const int g = static_cast<int>(lane / 4), t = static_cast<int>(lane % 4);
  float out[4];
  for (int i = 0; i < 4; ++i) {
    const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i % 2);
    float acc = d[i];
    for (int k = 0; k < 16; ++k) acc += A(row, k) * B(k, col);
    out[i] = acc;
  }
  emu_warp_barrier();  // every lane has read the slots before any overwrites them
  for (int i = 0; i < 4; ++i) d[i] = out[i];
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
