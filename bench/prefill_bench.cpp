// ktx-prefill-bench: the routed-expert layer at prefill (hundreds of tokens per call) with the
// shapes of real models and random Q4_K blocks, run by MoePrefill (Q4_K: the K-quant kernel on
// the blocks in place). Prints ms per layer, TOP/s of the expert GEMMs actually done (2 * 3 * N * K
// per (token, expert) pair; padding to groups of 16 not counted) and the ratio to the matrix
// peak: --peak (TOP/s), and the peak measured by a tile-only loop (tdpbssd on all threads), or
// on hosts without AMX a vpdpwssd loop (the int16 K-quant kernel's instruction), or with
// --act i8 a vpdpbusd loop (the int8-activation kernel's).
// --experts allocates fewer distinct experts; routing still spreads over the model's count
// (expert e uses the weights of e mod --experts), so tokens per expert stay realistic.
//
//   ktx-prefill-bench --model all --tokens 512,2048 --threads 16 --experts 16 --peak 78
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>

#include <immintrin.h>

#include "bench/amx_tiles.h"
#include "common/hw/cpu_features.h"
#include "common/kernels/kernel_desc.h"
#include "runtime/cpu/jit/jit_kernel.h"
#include "runtime/cpu/prefill_moe.h"
#include "tools/ktx-run/tune/tune.h"

namespace {

using namespace ktx;
using namespace ktx::cpu;

// The layer shapes are the tuner's presets (tools/ktx-run/tune/tune.h).
using ModelShape = MoeShape;

// Tile-only loop: `iters` x 4 independent tdpbssd on 16x16 int32 C tiles, A 16 x colsb bytes.
class TilePeak final : public JitKernel {
 public:
  explicit TilePeak(int colsb) : colsb_(colsb) {}
  void run(int64_t iters) const { getCode<void (*)(int64_t)>()(iters); }
  int64_t ops_per_iter() const { return 4 * 2 * 16 * 16 * colsb_; }

 private:
  void generate() override {
    using namespace Xbyak::util;
    preamble();
    std::array<int, 8> colsb, rows;
    for (int t = 0; t < 8; ++t) {
      colsb[t] = (t == 4 || t == 5) ? colsb_ : 64;
      rows[t] = (t >= 6) ? colsb_ / 4 : 16;
    }
    bench::emit_tile_frame(*this, colsb, rows);
    for (int t = 0; t < 8; ++t) tilezero(Xbyak::Tmm(t));
    Xbyak::Label loop;
    L(loop);
    tdpbssd(tmm0, tmm4, tmm6);
    tdpbssd(tmm1, tmm4, tmm7);
    tdpbssd(tmm2, tmm5, tmm6);
    tdpbssd(tmm3, tmm5, tmm7);
    dec(rdi);
    jnz(loop);
    tilerelease();
    mov(rsp, rbp);
    postamble();
  }
  int colsb_;
};

double tile_peak_tops(int colsb, ThreadPool& pool) {
  TilePeak k(colsb);
  if (!k.create("tile_peak")) return 0;
  const int64_t iters = 2000000;
  k.run(1000);
  const auto t0 = std::chrono::steady_clock::now();
  pool.parallel_for(pool.size(), [&](int64_t) { k.run(iters); });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(k.ops_per_iter()) * iters * pool.size() / s / 1e12;
}

// The micro-kernel alone with its operands hot in L1/L2: every thread runs 16 tokens x
// `panels` x 16 rows over 64 blocks (one driver K chunk) on its own random operands. Shows
// how far the layer is from the kernel's own ceiling (the rest: memory, phases, padding).
double kernel_tops(const GemmInt8Kernel& kernel, int64_t kBlocks, int64_t kPanels,
                   ThreadPool& pool) {
  const int64_t kIters = 4000 * 512 / (kBlocks * kPanels);
  std::vector<double> done(static_cast<size_t>(pool.size()), 0.0);
  const auto t0 = std::chrono::steady_clock::now();
  pool.parallel_for(pool.size(), [&](int64_t th) {
    std::mt19937 rng(static_cast<uint32_t>(th));
    std::vector<int8_t> a(16 * kBlocks * 32), b(kPanels * kBlocks * 512);
    std::vector<float> as(kBlocks * 16, 0.01f), ws(kPanels * kBlocks * 16, 0.02f);
    std::vector<float> out(16 * kPanels * 16);
    for (auto& v : a) v = static_cast<int8_t>(rng());
    for (auto& v : b) v = static_cast<int8_t>(rng() & 15);
    GemmTileArgs g;
    g.a = a.data(), g.a_lo = a.data(), g.a_stride = kBlocks * 32;  // planes alias: speed only
    g.a_scale = as.data(), g.a_sum = as.data();
    g.b = b.data(), g.b_panel_stride = kBlocks * 512, g.w_scale = ws.data(), g.w_bias = ws.data();
    g.w_panel_stride = kBlocks * 16 * 4, g.out = out.data(), g.out_stride = kPanels * 16;
    g.k_blocks = kBlocks, g.n_panels = kPanels;
    for (int64_t i = 0; i < kIters; ++i) kernel.run(g);
    done[static_cast<size_t>(th)] = out[5];
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 2.0 * 16 * kPanels * 16 * kBlocks * 32 * kIters * pool.size() / s / 1e12;
}

// The K-quant kernel alone: every thread runs one 16-row Q4_K panel of n_super super-blocks
// against `groups` token groups, weights and activations hot in L1/L2 (its own random data).
// TOP/s counts 2·16·16·256 per (super-block, group): the real products, not the four planes.
void fill_q4_k(uint8_t* dst, uint64_t bytes, uint64_t seed);
double kq_kernel_tops(const GemmKqKernel& kernel, int64_t n_super, int64_t groups,
                      ThreadPool& pool) {
  const int64_t kIters = 20000 / (n_super * groups) + 1;
  const int64_t rb = n_super * 144;
  const auto t0 = std::chrono::steady_clock::now();
  pool.parallel_for(pool.size(), [&](int64_t th) {
    std::mt19937 rng(static_cast<uint32_t>(th));
    std::vector<uint8_t> w(16 * rb);
    fill_q4_k(w.data(), w.size(), static_cast<uint64_t>(th));
    std::vector<int8_t> act(groups * n_super * kKqActBytes);
    for (auto& v : act) v = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
    if (kernel.act_layout() == KqActLayout::i8_quads) {  // its scales live in the tiles
      for (int64_t t = 0; t < groups * n_super; ++t) {
        auto* sc = reinterpret_cast<float*>(act.data() + t * kKqActBytes + kKqI8Scales);
        std::fill(sc, sc + 256, 0.01f);
      }
    }
    std::vector<float> f(groups * n_super * kKqActFloats, 0.01f), out(groups * 256);
    GemmKqArgs g;
    g.w = w.data(), g.w_stride = rb, g.act = act.data(), g.act_group_stride = n_super * kKqActBytes;
    g.act_f = f.data(), g.act_f_group_stride = n_super * kKqActFloats * 4;
    g.out = out.data(), g.out_group_stride = 256, g.n_super = n_super, g.n_groups = groups;
    for (int64_t i = 0; i < kIters; ++i) kernel.run(g);
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 2.0 * 16 * 16 * 256 * n_super * groups * kIters * pool.size() / s / 1e12;
}

// The multiply-add peaks of AVX-512 VNNI, all threads: 24 independent chains per thread, enough
// to cover the instruction's latency at two per cycle (16 measured 15 % below the rate on a Zen
// 5 host); the empty asm keeps the loop from being folded without pinning accumulators to
// memory. Int16 (vpdpwssd, 32 multiply-adds per instruction) is the ceiling of the int16
// K-quant kernel, int8 (vpdpbusd, 64 u8 x s8) that of the int8-activation one; each
// multiply-add counts as 2 ops.
template <bool kInt8>
__attribute__((target("avx512f,avx512vnni"), noinline)) int32_t vnni_loop(int64_t iters) {
  constexpr int kChains = 24;
  __m512i acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_epi32(i);
  const __m512i a = kInt8 ? _mm512_set1_epi8(3) : _mm512_set1_epi16(3);
  const __m512i b = kInt8 ? _mm512_set1_epi8(5) : _mm512_set1_epi16(5);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < kChains; ++i)
      acc[i] = kInt8 ? _mm512_dpbusd_epi32(acc[i], a, b) : _mm512_dpwssd_epi32(acc[i], a, b);
    __asm__ volatile("" : : "v"(acc[0]), "v"(acc[1]));
  }
  __m512i s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_epi32(s, acc[i]);
  return _mm512_reduce_add_epi32(s);
}
// The best of three runs of `loop` on every thread at once: ops_per_iter (multiply-adds x 2) per
// iteration and thread, in TOP/s.
double loop_peak_tops(ThreadPool& pool, int32_t (*loop)(int64_t), double ops_per_iter) {
  const int64_t iters = 4000000;
  (void)loop(1000);
  std::vector<int32_t> sink(static_cast<size_t>(pool.size()));
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(pool.size(), [&](int64_t th) { sink[static_cast<size_t>(th)] = loop(iters); });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, ops_per_iter * static_cast<double>(iters) * pool.size() / s / 1e12);
  }
  return best;
}
double vnni_peak_tops(ThreadPool& pool) { return loop_peak_tops(pool, vnni_loop<false>, 2.0 * 32 * 24); }
double vnni8_peak_tops(ThreadPool& pool) { return loop_peak_tops(pool, vnni_loop<true>, 2.0 * 64 * 24); }

// The AVX2 form of the same ceiling: 12 independent vpmaddwd + vpaddd chains per thread (16
// int16 multiply-adds per pair, counted as 2 ops), the AVX2 int16 K-quant kernel's pair.
__attribute__((target("avx2"), noinline)) int32_t madd_loop(int64_t iters) {
  constexpr int kChains = 12;
  __m256i acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_epi32(i);
  const __m256i a = _mm256_set1_epi16(3), b = _mm256_set1_epi16(5);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(a, b));
    __asm__ volatile("" : : "x"(acc[0]), "x"(acc[1]));
  }
  __m256i s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_epi32(s, acc[i]);
  alignas(32) int32_t v[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(v), s);
  return v[0] + v[7];
}
double madd_peak_tops(ThreadPool& pool) { return loop_peak_tops(pool, madd_loop, 2.0 * 16 * 12); }

// Random Q4_K blocks with small finite fp16 d/dmin (random bytes elsewhere).
void fill_q4_k(uint8_t* dst, uint64_t bytes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (uint64_t i = 0; i + 8 <= bytes; i += 8) {
    const uint64_t v = rng();
    std::memcpy(dst + i, &v, 8);
  }
  const uint16_t d = fp32_to_fp16(1e-3f), dmin = fp32_to_fp16(5e-4f);
  for (uint64_t b = 0; b + 144 <= bytes; b += 144) {
    std::memcpy(dst + b, &d, 2);
    std::memcpy(dst + b + 2, &dmin, 2);
  }
}

struct Options {
  std::string model = "all";
  std::vector<int64_t> tokens = {512, 2048};
  int threads = 0, iters = 3;
  int64_t experts = 16;
  double peak = 78.0;
  std::string isa;  // cap on the ISA tier (empty: the best this CPU has)
  std::string act = "i16";  // K-quant prefill activations: i16 (q16_k) or i8 (q8_k32, avx512)
};

IsaTier bench_tier(const Options& o) {
  const IsaTier best = best_isa_tier(detect_cpu_isa());
  if (o.isa.empty()) return best;
  auto t = parse_isa_tier(o.isa);
  return t && *t < best ? *t : best;
}

int bench_model(const ModelShape& m, const Options& o, ThreadPool& pool, double measured_peak) {
  MoeDesc phys;
  phys.n_embd = m.n_embd, phys.n_ff = m.n_ff, phys.top_k = m.top_k;
  phys.n_expert = std::min(o.experts, m.n_expert);
  phys.top_k = std::min(m.top_k, phys.n_expert);  // only the repack sees this descriptor
  phys.gate_type = phys.up_type = phys.down_type = GGMLType::Q4_K;
  phys.max_tokens = 4096;
  phys.isa = bench_tier(o);
  const uint64_t rb_in = ggml_row_bytes(GGMLType::Q4_K, m.n_embd).value();
  const uint64_t rb_ff = ggml_row_bytes(GGMLType::Q4_K, m.n_ff).value();
  std::vector<uint8_t> gate(phys.n_expert * m.n_ff * rb_in), up(gate.size()),
      down(phys.n_expert * m.n_embd * rb_ff);
  fill_q4_k(gate.data(), gate.size(), 1), fill_q4_k(up.data(), up.size(), 2);
  fill_q4_k(down.data(), down.size(), 3);
  const auto t0 = std::chrono::steady_clock::now();
  auto packed = repack_moe(phys, {gate.data(), up.data(), down.data()}, pool);
  if (!packed) return std::fprintf(stderr, "%s\n", packed.status().message().c_str()), 1;
  const double repack_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MoeDesc desc = phys;
  desc.n_expert = m.n_expert, desc.top_k = m.top_k;
  RepackedMoe all;
  all.desc = desc;
  for (int64_t e = 0; e < m.n_expert; ++e) {  // expert e aliases e mod phys.n_expert
    const size_t src = static_cast<size_t>(e % phys.n_expert);
    if (!packed->gate.empty()) all.gate.push_back(packed->gate[src]);
    if (!packed->up.empty()) all.up.push_back(packed->up[src]);
    if (!packed->down.empty()) all.down.push_back(packed->down[src]);
    if (!packed->gate_raw.empty()) all.gate_raw.push_back(packed->gate_raw[src]);
    if (!packed->up_raw.empty()) all.up_raw.push_back(packed->up_raw[src]);
    if (!packed->down_raw.empty()) all.down_raw.push_back(packed->down_raw[src]);
  }
  MoeConfig cfg;
  cfg.rows_per_task = 128;
  cfg.prefill_act = o.act == "i8" ? 8 : 16;
  auto moe = MoePrefill::create(desc, cfg, detect_cpu_isa());
  if (!moe) return std::fprintf(stderr, "%s\n", moe.status().message().c_str()), 1;
  const bool in_place = packed->gate.empty() && packed->up.empty() && packed->down.empty();
  std::printf("\n%s: %s\n  kernel %s, %lld distinct experts ", m.name.c_str(),
              desc.to_string().c_str(), (*moe)->kernel_name().c_str(),
              static_cast<long long>(phys.n_expert));
  if (in_place) {
    std::printf("read in place (no repack)\n");
  } else {
    std::printf("repacked in %.2f s (%.2f GB/s of Q4_K)\n", repack_s,
                (gate.size() + up.size() + down.size()) / repack_s / 1e9);
  }
  std::printf("  %6s %10s %9s %9s %8s %10s   %s\n", "tokens", "ms/layer", "TOP/s", "padded%",
              "%peak", "%measured", "phases ms: quant gate up act down combine");
  std::mt19937 rng(7);
  for (int64_t T : o.tokens) {
    std::vector<float> x(T * m.n_embd), out(x.size()), w(T * m.top_k, 0.125f);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& v : x) v = nd(rng);
    std::vector<int32_t> ids(T * m.top_k), perm(m.n_expert);
    for (int64_t i = 0; i < m.n_expert; ++i) perm[i] = static_cast<int32_t>(i);
    for (int64_t t = 0; t < T; ++t) {
      std::shuffle(perm.begin(), perm.end(), rng);
      std::copy(perm.begin(), perm.begin() + m.top_k, ids.begin() + t * m.top_k);
    }
    const MoeRouting r{T, ids.data(), w.data()};
    if (!(*moe)->run(all, x.data(), r, out.data(), pool)) return 1;  // warm-up
    const auto s0 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.iters; ++i) (void)(*moe)->run(all, x.data(), r, out.data(), pool);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count() /
                     o.iters;
    const double ops = 6.0 * (*moe)->last_pairs() * m.n_embd * m.n_ff;
    const double tops = ops / s / 1e12;
    const PrefillPhaseMs& ph = (*moe)->last_phase_ms();
    std::printf("  %6lld %10.2f %9.2f %9.1f %8.1f %10.1f   %.1f %.1f %.1f %.1f %.1f %.1f\n",
                static_cast<long long>(T), s * 1e3, tops,
                100.0 * (*moe)->last_padded_pairs() / (*moe)->last_pairs() - 100.0,
                100.0 * tops / o.peak, measured_peak > 0 ? 100.0 * tops / measured_peak : 0.0,
                ph.quantize, ph.gate, ph.up, ph.activate, ph.down, ph.combine);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ktx-prefill-bench: routed-expert prefill layer (Q4_K) on this CPU"};
  Options o;
  app.add_option("--model", o.model, "deepseek-v3, qwen3-30b-a3b or all");
  app.add_option("--tokens", o.tokens, "tokens per call")->delimiter(',');
  app.add_option("--threads", o.threads, "threads (0: all)");
  app.add_option("--iters", o.iters, "timed calls per point");
  app.add_option("--experts", o.experts, "distinct experts to allocate");
  app.add_option("--peak", o.peak, "matrix peak of this machine in TOP/s (AMX INT8, or the "
                 "AVX-512 int16 rate)");
  app.add_option("--isa", o.isa, "cap the ISA tier: reference, avx2, avx512, amx");
  app.add_option("--act", o.act, "K-quant prefill activations on the avx512 tier: i16 (the "
                 "int16 GEMM, vpdpwssd) or i8 (int8 per 32, vpdpbusd)")
      ->check(CLI::IsMember({"i16", "i8"}));
  CLI11_PARSE(app, argc, argv);
  ThreadPool pool(o.threads);
  double measured = 0;
  const IsaTier tier = bench_tier(o);
  if (tier == IsaTier::avx2) {
    if (auto k = create_gemm_kq_avx2(GGMLType::Q4_K, detect_cpu_isa())) {
      measured = madd_peak_tops(pool);
      std::printf("AVX2 tier: vpmaddwd + vpaddd peak on %d threads: %.2f TOP/s (int16 "
                  "multiply-adds x 2); the prefill kernel is the int16 K-quant GEMM\n",
                  pool.size(), measured);
      std::printf("micro-kernel %s alone: %.2f TOP/s (28 super-blocks x 4 groups), %.2f TOP/s "
                  "(8 x 1), %.2f TOP/s (8 x 8)\n", (*k)->name().c_str(),
                  kq_kernel_tops(**k, 28, 4, pool), kq_kernel_tops(**k, 8, 1, pool),
                  kq_kernel_tops(**k, 8, 8, pool));
    }
  } else if (tier == IsaTier::amx && detect_cpu_isa().amx_int8 && request_amx_permission()) {
    measured = tile_peak_tops(64, pool);
    std::printf("tile-only tdpbssd peak on %d threads: %.1f TOP/s (K=64 per op), %.1f TOP/s "
                "(K=32 per op, as the prefill kernel issues)\n", pool.size(), measured,
                tile_peak_tops(32, pool));
    for (bool bias : {false, true}) {
      auto k = create_gemm_int8_amx(bias, detect_cpu_isa());
      if (k) std::printf("micro-kernel %s alone: %.1f TOP/s (64 blocks x 8 panels, B in L2), "
                         "%.1f TOP/s (16 blocks x 2 panels, all in L1)\n", (*k)->name().c_str(),
                         kernel_tops(**k, 64, 8, pool), kernel_tops(**k, 16, 2, pool));
    }
    if (auto k = create_gemm_kq_amx(GGMLType::Q4_K, detect_cpu_isa())) {
      std::printf("micro-kernel %s alone: %.1f TOP/s (28 super-blocks x 4 groups), %.1f TOP/s "
                  "(8 x 8)\n", (*k)->name().c_str(), kq_kernel_tops(**k, 28, 4, pool),
                  kq_kernel_tops(**k, 8, 8, pool));
    }
  } else if (auto k = create_gemm_kq_avx512_i8(GGMLType::Q4_K, detect_cpu_isa());
             tier == IsaTier::avx512 && o.act == "i8" && k) {
    measured = vnni8_peak_tops(pool);
    std::printf("no AMX here; vpdpbusd peak on %d threads: %.2f TOP/s (int8 multiply-adds "
                "x 2), vpdpwssd %.2f; the prefill kernel is the int8-activation K-quant GEMM\n",
                pool.size(), measured, vnni_peak_tops(pool));
    std::printf("micro-kernel %s alone: %.2f TOP/s (28 super-blocks x 4 groups), %.2f TOP/s "
                "(8 x 1), %.2f TOP/s (8 x 8)\n", (*k)->name().c_str(),
                kq_kernel_tops(**k, 28, 4, pool), kq_kernel_tops(**k, 8, 1, pool),
                kq_kernel_tops(**k, 8, 8, pool));
  } else if (auto k = create_gemm_kq_avx512(GGMLType::Q4_K, detect_cpu_isa());
             tier == IsaTier::avx512 && k) {
    measured = vnni_peak_tops(pool);
    std::printf("no AMX here; vpdpwssd peak on %d threads: %.2f TOP/s (int16 multiply-adds "
                "x 2); the prefill kernel is the int16 K-quant GEMM\n", pool.size(), measured);
    std::printf("micro-kernel %s alone: %.2f TOP/s (28 super-blocks x 4 groups), %.2f TOP/s "
                "(8 x 1), %.2f TOP/s (8 x 8)\n", (*k)->name().c_str(),
                kq_kernel_tops(**k, 28, 4, pool), kq_kernel_tops(**k, 8, 1, pool),
                kq_kernel_tops(**k, 8, 8, pool));
  } else {
    std::printf("no vector prefill kernel for this tier here: the prefill kernel is the C++ twin (slow)\n");
    std::fflush(stdout);
  }
  for (const auto& m : moe_presets()) {
    if (o.model != "all" && o.model != m.name) continue;
    if (bench_model(m, o, pool, measured) != 0) return 1;
  }
  return 0;
}
