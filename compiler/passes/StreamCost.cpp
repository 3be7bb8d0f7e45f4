// The streaming cost model (see StreamCost.h). Every constant that turns a profile figure
// into a rate the kernels reach is in the first block, with its source, so a measurement
// replaces one number in one place.
#include "compiler/passes/StreamCost.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "common/kernels/kernel_desc.h"

namespace ktx::kt {
namespace {

// Per streamed layer: kernel launches and the slot hand-off, GPU side.
constexpr double kGpuLaunchSeconds = 0.2e-3;
// The AMX MoE prefill GEMM reaches 2-3 TOP/s of a 47-62 TOP/s int8 tile peak at 512..2048
// tokens on the lent Xeon (docs/kernels.md, the AMX GEMM's rows): 8% of amx_int8_tops leans
// toward the CPU, so a layer streams only where the GPU clearly wins.
constexpr double kAmxEfficiency = 0.08;
// AVX-512: int8/int16 VNNI products do about 4 ops per float FMA lane op, at half the peak.
constexpr double kAvx512OpsPerFlop = 4.0, kAvx512Efficiency = 0.5;
// AVX2: vpmaddwd does about 2 ops per float FMA lane op, at half the peak.
constexpr double kAvx2OpsPerFlop = 2.0, kAvx2Efficiency = 0.5;
// Where the profile has no peak for the tier (not measured): 1 TOP/s.
constexpr double kFallbackCpuOps = 1e12;
// Float GEMM TFLOP/s of KTX's GPU kernels by arch: estimates from the kernels' design (FMA,
// no tensor cores) until `ktx-run probe` measures gemm_tflops.
constexpr double kGemmTflopsSm90 = 20, kGemmTflopsSm80 = 12, kGemmTflopsSm86 = 10,
                 kGemmTflopsOlder = 5;

double cpu_rate(const HwProfile& hw, std::string* source) {
  const ComputePeaks& p = hw.cpu.peaks;
  double peak = 0, factor = 0;
  const char* tier = "";
  switch (cpu::best_isa_tier(hw.cpu.isa)) {
    case cpu::IsaTier::amx:
      tier = "AMX", peak = p.amx_int8_tops, factor = kAmxEfficiency;
      *source = fmt::format("AMX: {} x amx_int8_tops {:.4g}", kAmxEfficiency, peak);
      break;
    case cpu::IsaTier::avx512:
      tier = "AVX-512", peak = p.avx512_fma_tflops, factor = kAvx512Efficiency * kAvx512OpsPerFlop;
      *source = fmt::format("AVX-512: {} x {} x avx512_fma_tflops {:.4g}", kAvx512Efficiency,
                            kAvx512OpsPerFlop, peak);
      break;
    case cpu::IsaTier::avx2:
      tier = "AVX2", peak = p.avx2_fma_tflops, factor = kAvx2Efficiency * kAvx2OpsPerFlop;
      *source = fmt::format("AVX2: {} x {} x avx2_fma_tflops {:.4g}", kAvx2Efficiency,
                            kAvx2OpsPerFlop, peak);
      break;
    case cpu::IsaTier::reference:
      tier = "reference";
      break;
  }
  if (peak <= 0) {
    *source = fmt::format("{}: no measured peak in the profile, assumed {:.0f} TOP/s", tier,
                          kFallbackCpuOps / 1e12);
    return kFallbackCpuOps;
  }
  return factor * peak * 1e12;
}

// Fraction of a layer's experts a call of n tokens touches (each token picks top_k of n_expert
// uniformly): what the CPU reads from DRAM.
double hit_fraction(const StreamLayer& l, int64_t n) {
  if (l.n_expert <= 0 || l.top_k >= l.n_expert) return 1.0;
  return 1.0 - std::pow(1.0 - double(l.top_k) / double(l.n_expert), double(n));
}

bool gpu_wins(const StreamLayer& l, const StreamRates& r, int64_t n) {
  return gpu_seconds(l, r, n) < cpu_seconds(l, r, n);
}

}  // namespace

double estimated_gemm_tflops(const std::string& arch) {
  const int sm = arch.size() > 3 ? std::atoi(arch.c_str() + 3) : 0;
  if (sm >= 90) return kGemmTflopsSm90;
  if (sm >= 86) return kGemmTflopsSm86;
  if (sm >= 80) return kGemmTflopsSm80;
  return kGemmTflopsOlder;
}

StreamRates stream_rates(const HwProfile& hw) {
  StreamRates r;
  if (!hw.gpus.empty()) {
    const GpuInfo& g = hw.gpus.front();
    r.gpu_name = g.name;
    r.gpu_arch = g.arch;
    r.pcie_bytes_per_s = g.pcie_bw_gbs * 1e9;
    r.gpu_estimated = g.gemm_tflops <= 0;
    r.gpu_flops = (r.gpu_estimated ? estimated_gemm_tflops(g.arch) : g.gemm_tflops) * 1e12;
  }
  r.cpu_ops = cpu_rate(hw, &r.cpu_source);
  r.dram_bytes_per_s = hw.memory.read_bw_gbs * 1e9;
  return r;
}

double moe_flops(const StreamLayer& l, int64_t n) {
  return 2.0 * 3.0 * double(n) * double(l.top_k) * double(l.n_embd) * double(l.n_ff);
}

double pcie_seconds(const StreamLayer& l, const StreamRates& r) {
  return r.pcie_bytes_per_s > 0 ? double(l.bytes) / r.pcie_bytes_per_s : HUGE_VAL;
}

double gpu_seconds(const StreamLayer& l, const StreamRates& r, int64_t n) {
  const double compute = r.gpu_flops > 0 ? moe_flops(l, n) / r.gpu_flops : HUGE_VAL;
  return std::max(pcie_seconds(l, r), compute) + kGpuLaunchSeconds;
}

double cpu_seconds(const StreamLayer& l, const StreamRates& r, int64_t n) {
  const double reads = r.dram_bytes_per_s > 0
                           ? double(l.bytes) * hit_fraction(l, n) / r.dram_bytes_per_s : 0.0;
  return std::max(reads, moe_flops(l, n) / r.cpu_ops);
}

int64_t stream_min_tokens(const StreamLayer& l, const StreamRates& r, int64_t chunk) {
  if (chunk < 1 || r.pcie_bytes_per_s <= 0 || !gpu_wins(l, r, chunk)) return 0;
  // Walk down while the GPU still wins: the answer holds for every size from it to chunk.
  int64_t n = chunk;
  while (n > 1 && gpu_wins(l, r, n - 1)) --n;
  return n;
}

uint64_t stream_vram_bytes(const std::vector<const StreamLayer*>& layers, int64_t chunk,
                           int64_t widest_activation) {
  if (layers.empty()) return 0;
  uint64_t slot = 0, per_token = 0;
  for (const StreamLayer* l : layers) {
    slot = std::max(slot, l->bytes);
    // Gathered inputs and per-slot outputs (n_embd each), gate and up hidden (n_ff each),
    // float, per routed token.
    per_token = std::max(per_token, uint64_t(l->top_k) * uint64_t(2 * l->n_embd + 2 * l->n_ff) * 4);
  }
  const uint64_t c = uint64_t(chunk);
  const uint64_t arena_growth =
      chunk > kArenaTokens ? 8ull * (c - kArenaTokens) * 4 * uint64_t(widest_activation) : 0;
  return 2 * slot + c * per_token + arena_growth;
}

StreamPlan plan_streaming(const std::vector<StreamLayer>& layers, const StreamRates& r,
                          const StreamRequest& req) {
  StreamPlan plan;
  plan.min_tokens.assign(layers.size(), 0);
  if (layers.empty()) return plan;
  // 1. The chunk: the request's, or the largest candidate that fits (and that a call can
  //    reach: at most the context, though never below the arena's 512 tokens).
  std::vector<int64_t> candidates;
  if (req.chunk > 0) {
    candidates.push_back(req.chunk);
  } else {
    for (int64_t c : kStreamChunks)
      if (req.max_tokens <= 0 || c <= req.max_tokens || c == kArenaTokens) candidates.push_back(c);
  }
  std::vector<const StreamLayer*> all;
  for (const StreamLayer& l : layers) all.push_back(&l);
  for (int64_t c : candidates) {
    const uint64_t need = stream_vram_bytes(all, c, req.widest_activation);
    if (need <= req.vram_left) {
      plan.chunk = c;
      break;
    }
    plan.vram_needed = need;
  }
  if (plan.chunk == 0) return plan;
  plan.vram_needed = 0;
  // 2. Each layer's crossover at that chunk; the VRAM of the layers that stream.
  std::vector<const StreamLayer*> streamed;
  for (size_t i = 0; i < layers.size(); ++i) {
    plan.min_tokens[i] = stream_min_tokens(layers[i], r, plan.chunk);
    if (plan.min_tokens[i] > 0) streamed.push_back(&layers[i]);
  }
  plan.n_streamed = static_cast<int>(streamed.size());
  plan.vram_bytes = stream_vram_bytes(streamed, plan.chunk, req.widest_activation);
  return plan;
}

std::string format_bytes(uint64_t b) {
  if (b >= (1ull << 30)) return fmt::format("{:.2f} GiB", double(b) / double(1ull << 30));
  if (b >= (1ull << 20)) return fmt::format("{:.1f} MiB", double(b) / double(1ull << 20));
  return fmt::format("{:.1f} KiB", double(b) / 1024.0);
}

std::string explain_streaming(const std::vector<StreamLayer>& layers, const StreamRates& r,
                              const StreamPlan& plan, int64_t chunk, const std::string& why_not) {
  std::string o;
  o += fmt::format("kt-stream: routed experts, CPU or streamed to GPU '{}' ({}), per call of "
                   "{} tokens\n", r.gpu_name, r.gpu_arch, chunk);
  o += fmt::format("  inputs: PCIe {:.4g} GB/s; GPU GEMM {:.4g} TFLOP/s ({}); CPU {:.4g} TOP/s "
                   "({}); DRAM {:.4g} GB/s\n",
                   r.pcie_bytes_per_s / 1e9, r.gpu_flops / 1e12,
                   r.gpu_estimated ? "estimated from " + r.gpu_arch + ": set [[gpu]] gemm_tflops"
                                   : std::string("host profile gemm_tflops"),
                   r.cpu_ops / 1e12, r.cpu_source, r.dram_bytes_per_s / 1e9);
  if (!why_not.empty()) o += "  " + why_not + "\n";
  o += fmt::format("  {:<6} {:>10} {:>9} {:>10} {:>10}  {}\n", "layer", "experts", "PCIe ms",
                   "GPU ms", "CPU ms", "choice");
  double all_cpu = 0, chosen = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    const StreamLayer& l = layers[i];
    const double g = gpu_seconds(l, r, chunk), c = cpu_seconds(l, r, chunk);
    const int64_t from = i < plan.min_tokens.size() ? plan.min_tokens[i] : 0;
    all_cpu += c;
    chosen += from > 0 ? g : c;
    o += fmt::format("  {:<6} {:>10} {:>9.3f} {:>10.3f} {:>10.3f}  {}\n", l.layer,
                     format_bytes(l.bytes), pcie_seconds(l, r) * 1e3, g * 1e3, c * 1e3,
                     from > 0 ? fmt::format("stream from {} tokens", from) : std::string("cpu"));
  }
  o += fmt::format("  MoE per {}-token call: all-CPU {:.2f} ms, this plan {:.2f} ms ({} of {} "
                   "layers streamed); streaming VRAM {}\n",
                   chunk, all_cpu * 1e3, chosen * 1e3, plan.n_streamed, layers.size(),
                   format_bytes(plan.vram_bytes));
  return o;
}

}  // namespace ktx::kt
