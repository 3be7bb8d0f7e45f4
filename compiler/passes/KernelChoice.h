// Kernel selection for routed-expert layers, free of MLIR so it can be unit-tested: given a
// layer's shape and weight types and the host profile, the decode descriptor and config (and a
// prefill pair where MoePrefill repacks the types exactly) that --kt-select-kernels records
// on the op. Also the inverse the plan emitter needs: which CPU features a tier's kernels use.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/hw/hw_profile.h"
#include "common/util/status.h"
#include "common/kernels/kernel_desc.h"

namespace ktx::kt {

// Tokens per call up to which the runtime runs the decode (GEMV) driver; above it, prefill.
inline constexpr int64_t kDecodeMaxTokens = 16;
// The AVX-512 int16 prefill GEMM computes token groups of 16 per expert and expands each weight
// super-block once per call: it beats the decode GEMVs (which also run vpdpwssd, per token)
// from about 24 tokens per expert on average (docs/kernels.md: Qwen3-30B-A3B and DeepSeek-V3
// layers, 2-vCPU Zen 5: at 16 per expert 164 vs 119 ms and 2363 vs 2543 ms, at 32 per expert
// 196 vs 271 ms, at 32 per expert on DeepSeek-V3 3182 vs 6103 ms).
inline constexpr int64_t kAvx512PrefillTokensPerExpert = 24;
// The int8-activation form of that GEMM (vpdpbusd, activations rounded to int8 per 32
// elements; config act=i8), which AVX-512 VNNI plans take by default: it beats the decode
// GEMVs from about 8 tokens per expert (docs/kernels.md, 2-vCPU Zen 5, ms per layer:
// Qwen3-30B-A3B 64 tokens 48 vs 24, 128 tokens 48 vs 52, 192 tokens 51 vs 87; DeepSeek-V3
// 128 tokens 813 vs 557, 256 tokens 867 vs 1231), and the int16 GEMM everywhere.
inline constexpr int64_t kAvx512I8PrefillTokensPerExpert = 8;

// Which prefill activations the AVX-512 K-quant GEMM takes (`ktc plan --prefill-act`):
// automatic = i8 (the faster); i16 keeps the int16-grade GEMM (KL ~1e-7 instead of ~1e-5).
enum class PrefillAct { automatic, i16, i8 };
// The AVX2 form of the same GEMM (vpmaddwd + vpaddd, 8 tokens per vector) against the AVX2
// GEMVs: even at 32 tokens per expert, ahead from about 36 (Qwen3-30B-A3B layer, 2-vCPU Zen 5
// capped at AVX2: 16 per expert 209 vs 150 ms, 32 per expert 338 vs 325, 64 per expert 553 vs
// 744, 128 per expert 1005 vs 1479).
inline constexpr int64_t kAvx2PrefillTokensPerExpert = 40;

// One routed-expert layer as the IR describes it.
struct MoeShape {
  int64_t n_embd = 0, n_ff = 0, n_expert = 0, top_k = 0;
  GGMLType gate = GGMLType::F32, up = GGMLType::F32, down = GGMLType::F32;
};

struct MoeKernelChoice {
  cpu::MoeDesc decode;
  cpu::MoeConfig decode_config;
  std::optional<cpu::MoeDesc> prefill;  // nullopt: some type has no exact int8 repack
  cpu::MoeConfig prefill_config;
  // Fewest tokens per call that run the prefill kernel (smaller calls run the decode kernels):
  // where the prefill GEMM starts to beat the decode GEMVs on this tier.
  int64_t prefill_min_tokens = 0;
  bool decode_tuned = false, prefill_tuned = false;  // config came from the profile's [tuned]
};

// The choice for one layer. `prefill_tokens` is the most tokens one prefill call may carry
// (the plan's context). Tier: the best the profile's CPU allows. Config: the profile's [tuned]
// entry for the exact descriptor string when present, else select_moe_config() for the
// profile's thread budget. Errors: an invalid descriptor (names the problem), a [tuned] value
// that does not parse (names the key).
// `act` picks the AVX-512 prefill GEMM's activations (other tiers ignore it).
Expected<MoeKernelChoice> choose_moe_kernels(const MoeShape& shape, const HwProfile& hw,
                                             int64_t prefill_tokens,
                                             PrefillAct act = PrefillAct::automatic);

// Threads a plan uses on this profile: the budget, else the physical cores.
int plan_threads(const HwProfile& hw);

// The feature names (as in CpuIsa::names()) a tier's kernels need, weakest tier: none.
std::vector<std::string> isa_features_for(cpu::IsaTier tier);

}  // namespace ktx::kt
