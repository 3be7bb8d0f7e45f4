// Host emulation of CUDA for bench/cuda_emu/router_sample_emu.cpp: one thread block at a time,
// each CUDA thread a ucontext coroutine, __syncthreads a yield back to a scheduler that runs
// the threads in alternating orders between barriers and aborts when some thread of a block
// exits while others wait at a barrier. __shared__ variables become function statics.
#pragma once
#include <ucontext.h>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

struct EmuDim { unsigned x = 0, y = 0, z = 0; };
inline EmuDim threadIdx, blockIdx, blockDim, gridDim;

namespace emu {
struct Th { ucontext_t ctx; char* stack = nullptr; bool done = false, at_bar = false; };
inline std::vector<char*> stack_pool;
inline ucontext_t sched;
inline std::vector<Th>* ths = nullptr;
inline int cur = 0;
inline std::function<void()> body;
inline long barriers = 0;
inline void trampoline() { body(); (*ths)[cur].done = true; }
inline void sync() { (*ths)[cur].at_bar = true; swapcontext(&(*ths)[cur].ctx, &sched); }

template <typename F>
void launch(unsigned gx, unsigned gy, unsigned bx, F f) {
  gridDim.x = gx; gridDim.y = gy; blockDim.x = bx; blockDim.y = 1;
  for (unsigned by = 0; by < gy; ++by)
    for (unsigned b = 0; b < gx; ++b) {
      std::vector<Th> t(bx);
      ths = &t;
      body = f;
      for (unsigned i = 0; i < bx; ++i) {
        while (stack_pool.size() <= i) stack_pool.push_back(static_cast<char*>(std::malloc(128 * 1024)));
        getcontext(&t[i].ctx);
        t[i].ctx.uc_stack.ss_sp = stack_pool[i];
        t[i].ctx.uc_stack.ss_size = 128 * 1024;
        t[i].ctx.uc_link = &sched;
        makecontext(&t[i].ctx, trampoline, 0);
      }
      blockIdx.x = b; blockIdx.y = by;
      for (int round = 0;; ++round) {
        for (unsigned k = 0; k < bx; ++k) {
          const unsigned i = round % 2 ? bx - 1 - k : k;  // alternate orders between barriers
          if (t[i].done) continue;
          t[i].at_bar = false;
          cur = static_cast<int>(i);
          threadIdx.x = i;
          swapcontext(&sched, &t[i].ctx);
        }
        int done = 0, bar = 0;
        for (auto& x : t) { done += x.done; bar += !x.done && x.at_bar; }
        if (done == static_cast<int>(bx)) break;
        if (done != 0) { std::fprintf(stderr, "EMU: divergent barrier (%d done, %d waiting)\n", done, bar); std::abort(); }
        ++barriers;
      }
    }
}
}  // namespace emu

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static
inline void __syncthreads() { emu::sync(); }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
inline unsigned long long __double2ull_rn(double x) { return static_cast<unsigned long long>(std::nearbyint(x)); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) { return std::atomic_ref<unsigned long long>(*p).fetch_add(v); }
using std::exp; using std::log;
