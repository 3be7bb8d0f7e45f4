// ktx-amx-sched-lab: how fast the AMX tile unit runs a given instruction schedule, to design
// prefill kernels from measurements instead of guesses (tile registers are not renamed, tile
// stores do not forward to vector loads: what that costs depends on the exact order).
//
// A schedule is a loop body of space-separated ops, run `--iters` times per thread:
//   T<c><a><b>   tdpbssd tmm c, tmm a, tmm b              (16x16x64: 32768 int ops)
//   L<t>@<slot>  tileloadd tmm t from operand slot (1 KiB each, stride 64)
//   S<t>@<slot>  tilestored tmm t to result slot           Z<t>  tilezero tmm t
//   C@<slot>     vector read of a result slot: 16 x (vcvtdq2ps from memory, vaddps)
//   F<n>         n independent vfmadd231ps (stand-in for expansion / epilogue work)
// Operand slots advance by --step bytes per iteration and wrap after --span bytes, so the
// operands come from L1 (small span) or L2 (large span). Prints the tile TOP/s on one thread
// and on all threads, and the share of the first schedule (the tile-only probe).
//
//   ktx-amx-sched-lab --threads 16                       (the built-in study)
//   ktx-amx-sched-lab --sched "L4@0 L6@1 T046 L7@2 T147 L5@3 T256 T357"
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <sstream>
#include <vector>

#include "bench/amx_tiles.h"
#include "common/hw/cpu_features.h"
#include "runtime/cpu/jit/jit_kernel.h"
#include "runtime/cpu/thread_pool.h"

namespace {

using namespace ktx;
using namespace ktx::cpu;

struct Op {
  char kind;
  int a = 0, b = 0, c = 0;  // tiles, slot or count
};

Expected<std::vector<Op>> parse(const std::string& text) {
  std::vector<Op> ops;
  std::istringstream in(text);
  std::string w;
  auto digit = [](char ch) { return ch >= '0' && ch <= '9' ? ch - '0' : -1; };
  while (in >> w) {
    Op op{w[0]};
    const size_t at = w.find('@');
    const int slot = at == std::string::npos ? -1 : std::atoi(w.c_str() + at + 1);
    bool ok = true;
    switch (op.kind) {
      case 'T':
        ok = w.size() == 4;
        if (ok) op.c = digit(w[1]), op.a = digit(w[2]), op.b = digit(w[3]);
        ok = ok && op.a >= 0 && op.b >= 0 && op.c >= 0 && op.a < 8 && op.b < 8 && op.c < 8;
        break;
      case 'L':
      case 'S':
        op.a = w.size() > 1 ? digit(w[1]) : -1, op.b = slot;
        ok = op.a >= 0 && op.a < 8 && slot >= 0 && slot < 64;
        break;
      case 'Z':
        op.a = w.size() > 1 ? digit(w[1]) : -1;
        ok = op.a >= 0 && op.a < 8;
        break;
      case 'C':
        op.b = slot;
        ok = slot >= 0 && slot < 64;
        break;
      case 'F':
        op.c = std::atoi(w.c_str() + 1);
        ok = op.c > 0 && op.c < 4096;
        break;
      default:
        ok = false;
    }
    if (!ok) return Error("bad schedule op '{}'", w);
    ops.push_back(op);
  }
  if (ops.empty()) return Error("empty schedule");
  return ops;
}

// args: rdi = iterations, rsi = operand base, rdx = result base, rcx = step, r8 = wrap count.
class SchedKernel final : public JitKernel {
 public:
  explicit SchedKernel(std::vector<Op> ops) : JitKernel(256 * 1024), ops_(std::move(ops)) {}
  void run(int64_t iters, const int8_t* operands, int32_t* results, int64_t step,
           int64_t wrap) const {
    getCode<void (*)(int64_t, const int8_t*, int32_t*, int64_t, int64_t)>()(
        iters, operands, results, step, wrap);
  }
  int64_t ops_per_iter() const {
    int64_t n = 0;
    for (const Op& op : ops_) n += op.kind == 'T' ? 2 * 16 * 16 * 64 : 0;
    return n;
  }

 private:
  void generate() override {
    using namespace Xbyak::util;
    preamble();
    bench::emit_tile_frame(*this, {64, 64, 64, 64, 64, 64, 64, 64},
                           {16, 16, 16, 16, 16, 16, 16, 16});
    for (int t = 0; t < 8; ++t) tilezero(Xbyak::Tmm(t));
    for (int z = 0; z < 32; ++z) vpxord(Xbyak::Zmm(z), Xbyak::Zmm(z), Xbyak::Zmm(z));
    mov(rax, 64);
    mov(r9, rsi);   // current operand pointer
    mov(r10, r8);   // iterations left before wrapping
    Xbyak::Label loop, no_wrap;
    L(loop);
    int fma = 0;
    for (const Op& op : ops_) {
      switch (op.kind) {
        case 'T':
          tdpbssd(Xbyak::Tmm(op.c), Xbyak::Tmm(op.a), Xbyak::Tmm(op.b));
          break;
        case 'L':
          tileloadd(Xbyak::Tmm(op.a), ptr[r9 + rax + op.b * 1024]);
          break;
        case 'S':
          tilestored(ptr[rdx + rax + op.b * 1024], Xbyak::Tmm(op.a));
          break;
        case 'Z':
          tilezero(Xbyak::Tmm(op.a));
          break;
        case 'C':
          for (int r = 0; r < 16; ++r) {
            vcvtdq2ps(Xbyak::Zmm(16 + r), ptr[rdx + op.b * 1024 + 64 * r]);
            vaddps(Xbyak::Zmm(r), Xbyak::Zmm(r), Xbyak::Zmm(16 + r));
          }
          break;
        case 'F':
          for (int i = 0; i < op.c; ++i, ++fma) {
            vfmadd231ps(Xbyak::Zmm(fma % 12), zmm30, zmm31);
          }
          break;
      }
    }
    add(r9, rcx);
    dec(r10);
    jnz(no_wrap);
    mov(r9, rsi);
    mov(r10, r8);
    L(no_wrap);
    dec(rdi);
    jnz(loop, T_NEAR);
    tilerelease();
    mov(rsp, rbp);
    postamble();
  }
  std::vector<Op> ops_;
};

struct Result {
  double one = 0, all = 0;
};

Expected<Result> measure(const std::string& text, int64_t iters, int64_t step, int64_t span,
                         ThreadPool& pool) {
  KTX_ASSIGN_OR_RETURN(auto ops, parse(text));
  SchedKernel k(std::move(ops));
  KTX_RETURN_IF_ERROR(k.create("amx_sched"));
  const int64_t wrap = std::max<int64_t>(1, span / std::max<int64_t>(step, 1));
  const size_t bytes = static_cast<size_t>(wrap * step + 64 * 1024 + 128);
  auto time_on = [&](int n) {
    std::vector<double> secs(static_cast<size_t>(n));
    pool.parallel_for(n, [&](int64_t th) {
      std::vector<int8_t> operands(bytes, 1);
      std::vector<int32_t> results(64 * 256 + 32, 0);
      const auto ob = reinterpret_cast<uintptr_t>(operands.data());
      const auto rb = reinterpret_cast<uintptr_t>(results.data());
      int8_t* o = operands.data() + (64 - ob % 64) % 64;   // 64-byte aligned
      int32_t* r = results.data() + (16 - rb % 64 / 4) % 16;
      k.run(iters / 10 + 1, o, r, step, wrap);  // warm
      const auto t0 = std::chrono::steady_clock::now();
      k.run(iters, o, r, step, wrap);
      secs[static_cast<size_t>(th)] =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    });
    double worst = 0;
    for (double s : secs) worst = std::max(worst, s);
    return static_cast<double>(k.ops_per_iter()) * iters * n / worst / 1e12;
  };
  Result r;
  r.one = time_on(1);
  r.all = time_on(pool.size());
  return r;
}

// The built-in study (docs/kernels.md, "Tile-unit costs"): C = tmm0..3, operands tmm4..7
// unless said otherwise.
std::vector<std::pair<std::string, std::string>> study() {
  const std::string chunk[4] = {
      "L4@0 L6@1 T046 L7@2 T147 L5@3 T256 T357 ", "L4@4 L6@5 T046 L7@6 T147 L5@7 T256 T357 ",
      "L4@8 L6@9 T046 L7@10 T147 L5@11 T256 T357 ",
      "L4@12 L6@13 T046 L7@14 T147 L5@15 T256 T357 "};
  const std::string step = chunk[0] + chunk[1] + chunk[2] + chunk[3];
  const std::string stores = "S0@0 S1@1 S2@2 S3@3 Z0 Z1 Z2 Z3 ";
  const std::string stores2 = "S0@4 S1@5 S2@6 S3@7 Z0 Z1 Z2 Z3 ";
  return {
      {"probe: 4 tdp, no loads", "T046 T147 T256 T357"},
      {"1 load per 4 tdp", "L4@0 T045 T145 T245 T345"},
      {"1 load per 4 tdp, other buffer", "L6@0 T045 T145 T245 T345 L4@1 T065 T165 T265 T365"},
      {"2 loads per 4 tdp (reload A)", "L4@0 T046 T147 L5@1 T256 T357"},
      {"2 loads per 2 tdp", "L4@0 L5@1 T045 T145"},
      {"2x2: 4 loads per 4 tdp (kq chunk)", chunk[0]},
      {"4 tdp + 4 stores + 4 zero", "T046 T147 T256 T357 S0@8 S1@9 S2@10 S3@11 Z0 Z1 Z2 Z3"},
      {"kq step: 16 tdp, 16 loads, 4 stores", step + stores},
      {"kq step + C read one step late", step + stores + "C@4 C@5 C@6 C@7 " + step + stores2 +
                                              "C@0 C@1 C@2 C@3"},
      {"C per tdp: 2 tdp, 3 loads, 2 stores",
       "L4@0 L6@1 L7@2 T046 T147 S0@8 S1@9 Z0 Z1 C@10 C@11 "
       "L5@3 L2@4 L3@5 T052 T153 S0@10 S1@11 Z0 Z1 C@8 C@9"},
  };
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ktx-amx-sched-lab: AMX tile-unit throughput of instruction schedules"};
  int threads = 0;
  int64_t iters = 200000, step = 4096, span = 16384;
  std::vector<std::string> scheds;
  app.add_option("--threads", threads, "threads (0: all)");
  app.add_option("--iters", iters, "loop iterations per thread");
  app.add_option("--step", step, "bytes the operand slots advance per iteration");
  app.add_option("--span", span, "bytes after which they wrap (L1: 16384, L2: 524288)");
  app.add_option("--sched", scheds, "schedules to time (default: the built-in study)");
  CLI11_PARSE(app, argc, argv);
  if (!detect_cpu_isa().amx_int8 || !request_amx_permission()) {
    std::fprintf(stderr, "ktx-amx-sched-lab: this CPU or OS has no AMX-INT8\n");
    return 1;
  }
  ThreadPool pool(threads);
  std::vector<std::pair<std::string, std::string>> list;
  if (scheds.empty()) list = study();
  for (const auto& s : scheds) list.emplace_back(s, s);
  std::printf("operands advance %lld B/iter, wrap at %lld B; %d threads\n",
              static_cast<long long>(step), static_cast<long long>(span), pool.size());
  std::printf("%-36s %10s %10s %8s\n", "schedule", "1 thr TOP/s", "all TOP/s", "% probe");
  double probe = 0;
  for (const auto& [name, text] : list) {
    auto r = measure(text, iters, step, span, pool);
    if (!r) {
      std::fprintf(stderr, "ktx-amx-sched-lab: %s\n", r.status().message().c_str());
      return 1;
    }
    if (probe == 0) probe = r->all;
    std::printf("%-36s %10.2f %10.2f %8.1f\n", name.c_str(), r->one, r->all,
                100.0 * r->all / probe);
    std::fflush(stdout);
  }
  return 0;
}
