// ktx-linear-bench: the CPU linear op (runtime/cpu/linear.h) at the non-expert shapes of a real
// model, for decode (1 token) and prefill batches: time per call, TFLOP/s and the share of the
// measured peak of the unit the kernel uses (AMX bf16 for the prefill GEMM, the DRAM read
// bandwidth for the memory-bound GEMVs). Not a test: it times things and needs a quiet machine.
//
//   ktx-linear-bench --model dsv3 --tokens 1,512,2048 --threads 16 --type Q4_K
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/hw/cpu_features.h"
#include "common/hw/hw_probe_internal.h"
#include "common/quant/quant.h"
#include "runtime/cpu/linear.h"

using namespace ktx;
using namespace ktx::cpu;

namespace {

struct Shape {
  const char* name;
  int64_t rows, k;
};

// Non-expert matrices of one layer (DeepSeek-V3: MLA + dense FFN + shared expert; Qwen3-30B-A3B:
// GQA projections).
const std::vector<Shape> kDsv3 = {
    {"attn_q_a", 1536, 7168},   {"attn_q_b", 24576, 1536},  {"attn_kv_a_mqa", 576, 7168},
    {"attn_kv_b", 32768, 512},  {"attn_output", 7168, 16384}, {"ffn_gate", 18432, 7168},
    {"ffn_down", 7168, 18432},  {"ffn_gate_shexp", 2048, 7168}, {"ffn_down_shexp", 7168, 2048},
};
const std::vector<Shape> kQwen3 = {
    {"attn_q", 4096, 2048}, {"attn_k", 512, 2048}, {"attn_v", 512, 2048}, {"attn_output", 2048, 4096},
};

// A weight of `rows` rows: 64 distinct random rows, repeated (the speed does not depend on it).
std::vector<uint8_t> make_weight(GGMLType type, int64_t rows, int64_t k) {
  const size_t rb = *ggml_row_bytes(type, k);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> f(static_cast<size_t>(k));
  std::vector<uint8_t> distinct(64 * rb), w(static_cast<size_t>(rows) * rb);
  for (int r = 0; r < 64; ++r) {
    for (auto& v : f) v = nd(rng);
    quantize_row(type, f.data(), distinct.data() + r * rb, k);
  }
  for (int64_t r = 0; r < rows; ++r) std::copy_n(distinct.data() + (r % 64) * rb, rb, w.data() + r * rb);
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"CPU linear op at model shapes: decode GEMV and prefill GEMM throughput"};
  std::string model = "dsv3", type_name = "Q4_K", tokens_list = "1,512,2048";
  int threads = 0, reps = 3;
  std::string precision = "bf16x3";
  app.add_option("--model", model, "dsv3 | qwen3")->check(CLI::IsMember({"dsv3", "qwen3"}));
  app.add_option("--type", type_name, "weight type (Q4_K, Q6_K, Q8_0, BF16, ...)");
  app.add_option("--tokens", tokens_list, "comma-separated token counts");
  app.add_option("--threads", threads, "threads (0 = physical cores)");
  app.add_option("--precision", precision, "prefill GEMM rounding: bf16x3 (default) | bf16")
      ->check(CLI::IsMember({"bf16", "bf16x3"}));
  app.add_option("--reps", reps, "timed repetitions (the best counts)")->check(CLI::Range(1, 100));
  CLI11_PARSE(app, argc, argv);

  GGMLType type = GGMLType::Q4_K;
  bool found = false;
  for (uint32_t t = 0; t < 40; ++t) {
    if (ggml_type_supported(t) && ggml_type_name(t) == type_name) {
      type = static_cast<GGMLType>(t);
      found = true;
    }
  }
  if (!found) {
    std::fprintf(stderr, "error: unknown or unsupported weight type '%s'\n", type_name.c_str());
    return 1;
  }
  std::vector<int64_t> tokens;
  for (size_t p = 0; p < tokens_list.size();) {
    const size_t c = tokens_list.find(',', p);
    tokens.push_back(std::stoll(tokens_list.substr(p, c - p)));
    if (c == std::string::npos) break;
    p = c + 1;
  }
  CpuIsa cpu = detect_cpu_isa();
  if (cpu.amx_tile && !request_amx_permission()) cpu.amx_tile = cpu.amx_int8 = cpu.amx_bf16 = false;
  ThreadPool pool(threads);
  const IsaTier tier = best_isa_tier(cpu);
  std::fprintf(stderr, "measuring peaks on %d threads...\n", pool.size());
  const ComputePeaks peaks = measure_compute_peaks(pool.size(), cpu, 2.0);
  auto bw = measure_read_bandwidth(uint64_t{1} << 30, pool.size(), 1.0, cpu.avx2);
  const double read_gbs = bw ? *bw : 0.0;
  std::printf("# prefill GEMM precision %s (a bf16x3 call does 3 tile products per output: TFLOP/s\n"
              "# counts the GEMM's 2·rows·k·tokens, %%bf16pk the share of the tile unit that is)\n",
              precision.c_str());
  std::printf("# threads %d, tier %s, type %s; peaks: AMX bf16 %.1f TFLOP/s, AMX int8 %.1f TOP/s, "
              "AVX-512 FMA %.2f TFLOP/s; DRAM read %.1f GB/s\n",
              pool.size(), isa_tier_name(tier), type_name.c_str(), peaks.amx_bf16_tflops,
              peaks.amx_int8_tops, peaks.avx512_fma_tflops, read_gbs);
  std::printf("%-16s %6s %6s %6s %-28s %9s %8s %8s %8s\n", "tensor", "rows", "k", "tokens",
              "kernel", "ms", "TFLOP/s", "%bf16pk", "GB/s");
  const auto& shapes = model == "dsv3" ? kDsv3 : kQwen3;
  for (const Shape& s : shapes) {
    const auto w = make_weight(type, s.rows, s.k);
    auto lin = Linear::create({type, s.k, s.rows, tier}, w.data(), cpu);
    if (!lin) {
      std::fprintf(stderr, "error: %s\n", lin.status().message().c_str());
      return 1;
    }
    (*lin)->set_prefill_precision(precision == "bf16" ? Bf16Precision::bf16 : Bf16Precision::bf16x3);
    for (int64_t n : tokens) {
      std::vector<float> x(static_cast<size_t>(n * s.k)), y(static_cast<size_t>(n * s.rows));
      std::mt19937 rng(3);
      std::normal_distribution<float> nd(0.0f, 1.0f);
      for (auto& v : x) v = nd(rng);
      (*lin)->run(pool, x.data(), n, y.data());  // warm-up (page-in, scratch)
      double best = 1e30;
      for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        (*lin)->run(pool, x.data(), n, y.data());
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      const double flops = 2.0 * double(s.rows) * double(s.k) * double(n);
      const double tf = flops / best / 1e12;
      const double gbs = double(w.size()) / best / 1e9;
      const bool gemm = (*lin)->uses_gemm(n);
      std::printf("%-16s %6lld %6lld %6lld %-28s %9.3f %8.2f %8s %8.1f\n", s.name, (long long)s.rows,
                  (long long)s.k, (long long)n, (*lin)->kernel_name().substr(0, 28).c_str(), best * 1e3, tf,
                  gemm && peaks.amx_bf16_tflops > 0
                      ? (std::to_string(int(std::lround(100 * tf * (precision == "bf16" ? 1 : 3) /
                                                        peaks.amx_bf16_tflops))) + "%").c_str()
                      : "-",
                  gbs);
    }
  }
  return 0;
}
