// measure_compute_peaks: the arithmetic ceilings kernels are judged against. Every physical
// core runs a register-only loop of the instruction for ~seconds/n_kinds; the rate is the sum
// of the threads' work over the slowest thread's time. Loops, per kind:
//   AMX int8 / bf16: 4 independent tile products (tdpbssd / tdpbf16ps) on 16x16 C tiles, the
//     2x2 blocking the GEMM kernels use (A 16 x 64 B, B 16 x 64 B);
//   AVX-512 / AVX2 FMA: 16 independent vfmadd231ps chains on 512 / 256-bit registers.
// The operands are zeros: the units' speed does not depend on values.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "common/hw/cpu_features.h"
#include "common/hw/hw_probe_internal.h"

namespace ktx {
namespace {

struct alignas(64) TileCfg {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

TileCfg make_cfg() {
  TileCfg c;
  for (int i = 0; i < 8; ++i) {
    c.colsb[i] = 64;
    c.rows[i] = 16;
  }
  return c;
}

// Operations (multiply and add counted apart) per loop iteration.
constexpr double kAmxInt8Ops = 4.0 * 2 * 16 * 16 * 64;
constexpr double kAmxBf16Ops = 4.0 * 2 * 16 * 16 * 32;
constexpr double kFma512Ops = 16.0 * 2 * 16;
constexpr double kFma256Ops = 16.0 * 2 * 8;

__attribute__((target("amx-tile,amx-int8"))) void loop_amx_int8(int64_t iters) {
  static const TileCfg cfg = make_cfg();
  _tile_loadconfig(&cfg);
  _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
  _tile_zero(4); _tile_zero(5); _tile_zero(6); _tile_zero(7);
  for (int64_t i = 0; i < iters; ++i) {
    _tile_dpbssd(0, 4, 6);
    _tile_dpbssd(1, 4, 7);
    _tile_dpbssd(2, 5, 6);
    _tile_dpbssd(3, 5, 7);
  }
  _tile_release();
}

__attribute__((target("amx-tile,amx-bf16"))) void loop_amx_bf16(int64_t iters) {
  static const TileCfg cfg = make_cfg();
  _tile_loadconfig(&cfg);
  _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
  _tile_zero(4); _tile_zero(5); _tile_zero(6); _tile_zero(7);
  for (int64_t i = 0; i < iters; ++i) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_release();
}

// 16 chains in named registers (an array would live in memory); the asm keeps the compiler from
// folding the zero operands away.
#define KTX_FMA16(F) \
  a0 = F(x, y, a0); a1 = F(x, y, a1); a2 = F(x, y, a2); a3 = F(x, y, a3); \
  a4 = F(x, y, a4); a5 = F(x, y, a5); a6 = F(x, y, a6); a7 = F(x, y, a7); \
  a8 = F(x, y, a8); a9 = F(x, y, a9); a10 = F(x, y, a10); a11 = F(x, y, a11); \
  a12 = F(x, y, a12); a13 = F(x, y, a13); a14 = F(x, y, a14); a15 = F(x, y, a15)

// Opaque start values: identical chains would be merged into one.
#define KTX_OPAQUE(C)                                                                  \
  asm volatile("" : C(a0), C(a1), C(a2), C(a3), C(a4), C(a5), C(a6), C(a7));     \
  asm volatile("" : C(a8), C(a9), C(a10), C(a11), C(a12), C(a13), C(a14), C(a15))

__attribute__((target("avx512f"))) float loop_fma512(int64_t iters) {
  __m512 x = _mm512_setzero_ps(), y = x, a0 = x, a1 = x, a2 = x, a3 = x, a4 = x, a5 = x, a6 = x,
         a7 = x, a8 = x, a9 = x, a10 = x, a11 = x, a12 = x, a13 = x, a14 = x, a15 = x;
  KTX_OPAQUE("+v");
  for (int64_t i = 0; i < iters; ++i) {
    KTX_FMA16(_mm512_fmadd_ps);
    asm volatile("" : "+v"(x), "+v"(y));
  }
  a0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                     _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  a8 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)),
                     _mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15)));
  return _mm512_reduce_add_ps(_mm512_add_ps(a0, a8));
}

__attribute__((target("avx2,fma"))) float loop_fma256(int64_t iters) {
  __m256 x = _mm256_setzero_ps(), y = x, a0 = x, a1 = x, a2 = x, a3 = x, a4 = x, a5 = x, a6 = x,
         a7 = x, a8 = x, a9 = x, a10 = x, a11 = x, a12 = x, a13 = x, a14 = x, a15 = x;
  KTX_OPAQUE("+x");
  for (int64_t i = 0; i < iters; ++i) {
    KTX_FMA16(_mm256_fmadd_ps);
    asm volatile("" : "+x"(x), "+x"(y));
  }
  a0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                     _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  a8 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)),
                     _mm256_add_ps(_mm256_add_ps(a12, a13), _mm256_add_ps(a14, a15)));
  alignas(32) float f[8];
  _mm256_store_ps(f, _mm256_add_ps(a0, a8));
  return f[0];
}
#undef KTX_FMA16
#undef KTX_OPAQUE

// Runs `loop(iters)` on `threads` threads; ops/s over the slowest thread.
template <typename F>
double rate(int threads, double ops_per_iter, double seconds, F loop) {
  // Calibrate one thread's iterations to ~seconds.
  int64_t iters = 1 << 14;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    loop(iters);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0.02 || iters > (int64_t{1} << 40)) {
      iters = std::max<int64_t>(1, static_cast<int64_t>(iters * seconds / std::max(s, 1e-9)));
      break;
    }
    iters *= 4;
  }
  std::vector<double> secs(static_cast<size_t>(threads), 0.0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      const auto t0 = std::chrono::steady_clock::now();
      loop(iters);
      secs[static_cast<size_t>(t)] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    });
  }
  for (auto& th : pool) th.join();
  const double slowest = *std::max_element(secs.begin(), secs.end());
  return slowest > 0 ? ops_per_iter * static_cast<double>(iters) * threads / slowest : 0.0;
}

}  // namespace

ComputePeaks measure_compute_peaks(int threads, const CpuIsa& isa, double seconds) {
  ComputePeaks p;
  threads = std::max(1, threads);
  const int kinds = int(isa.amx_int8) + int(isa.amx_bf16) + int(isa.avx512f) + int(isa.avx2 && isa.fma);
  if (kinds == 0 || seconds <= 0) return p;
  const double per = seconds / kinds;
  const bool amx = isa.amx_tile && request_amx_permission();
  if (amx && isa.amx_int8)
    p.amx_int8_tops = rate(threads, kAmxInt8Ops, per, loop_amx_int8) / 1e12;
  if (amx && isa.amx_bf16)
    p.amx_bf16_tflops = rate(threads, kAmxBf16Ops, per, loop_amx_bf16) / 1e12;
  volatile float sink = 0;
  if (isa.avx512f)
    p.avx512_fma_tflops = rate(threads, kFma512Ops, per, [&](int64_t n) { sink = sink + loop_fma512(n); }) / 1e12;
  if (isa.avx2 && isa.fma)
    p.avx2_fma_tflops = rate(threads, kFma256Ops, per, [&](int64_t n) { sink = sink + loop_fma256(n); }) / 1e12;
  return p;
}

}  // namespace ktx
