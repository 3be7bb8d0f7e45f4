// The fiber scheduler of emu.h.
#include "emu.h"
#include <ucontext.h>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <functional>

EmuDim threadIdx, blockIdx, blockDim, gridDim;

namespace {
enum State { Ready, AtBlock, AtWarp, Done };
struct Fiber { ucontext_t ctx; State st = Ready; std::vector<char> stack; };
std::vector<Fiber> fibers;
ucontext_t sched_ctx;
int cur = -1;
std::vector<float> slots;
std::vector<unsigned> mma_slots;
std::function<void()> body;

void fiber_main() {
  body();
  fibers[cur].st = Done;
  swapcontext(&fibers[cur].ctx, &sched_ctx);
}
void yield(State s) {
  fibers[cur].st = s;
  swapcontext(&fibers[cur].ctx, &sched_ctx);
}
}  // namespace

void emu_block_barrier() { yield(AtBlock); }
void emu_warp_barrier() { yield(AtWarp); }
float* emu_warp_slots() { return slots.data(); }
unsigned* emu_mma_slots() { return mma_slots.data(); }

void emu_run_block(unsigned nt, const std::function<void()>& fn) {
  body = fn;
  fibers.assign(nt, Fiber{});
  slots.assign(nt, 0.0f);
  mma_slots.assign(static_cast<size_t>(nt) * 6, 0u);
  for (unsigned i = 0; i < nt; ++i) {
    Fiber& f = fibers[i];
    f.stack.resize(256 * 1024);
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.data();
    f.ctx.uc_stack.ss_size = f.stack.size();
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_main, 0);
  }
  blockDim.x = nt;
  for (;;) {
    bool ran = false;
    for (unsigned i = 0; i < nt; ++i) {
      if (fibers[i].st != Ready) continue;
      cur = static_cast<int>(i);
      threadIdx.x = i;
      swapcontext(&sched_ctx, &fibers[i].ctx);
      ran = true;
    }
    if (ran) continue;
    bool all_done = true, released = false;
    for (unsigned w = 0; w * 32 < nt; ++w) {
      bool any = false, all_warp = true;
      for (unsigned i = w * 32; i < std::min(nt, w * 32 + 32); ++i) {
        if (fibers[i].st == Done) continue;
        any = true;
        if (fibers[i].st != AtWarp) all_warp = false;
      }
      if (any && all_warp) {
        for (unsigned i = w * 32; i < std::min(nt, w * 32 + 32); ++i)
          if (fibers[i].st == AtWarp) fibers[i].st = Ready;
        released = true;
      }
    }
    if (released) continue;
    bool all_block = true;
    for (auto& f : fibers) {
      if (f.st != Done) all_done = false;
      if (f.st != Done && f.st != AtBlock) all_block = false;
    }
    if (all_done) break;
    if (all_block) {
      for (auto& f : fibers) if (f.st == AtBlock) f.st = Ready;
      continue;
    }
    std::fprintf(stderr, "emu: deadlock (divergent barriers)\n");
    std::abort();
  }
}
