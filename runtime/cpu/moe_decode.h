// Fused routed-expert layer for decode (a few tokens per expert, memory-bound): the fast twin
// of moe_reference(). Per call:
//   1. each token's activations are quantized once per format the gate/up kernels read;
//   2. gate and up GEMVs of every active expert, split over (expert, block of n_ff rows);
//   3. h = SiLU(gate)·up per (token, expert) pair, quantized for the down kernel;
//   4. down GEMVs, split over (expert, block of n_embd rows);
//   5. out[t] = Σ_j w_tj · down_{e_tj}(h_tj), summed in slot order (deterministic).
// Kernels come from make_gemv() (generated where the CPU allows, reference otherwise), so every
// supported weight type works; activation quantization is the only approximation.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/cpu/jit/gemv.h"
#include "runtime/cpu/moe_desc.h"
#include "runtime/cpu/moe_ref.h"
#include "runtime/cpu/thread_pool.h"

namespace ktx::cpu {

class MoeDecode {
 public:
  // Generates (or picks) the three kernels. Errors: invalid descriptor or config, kernel
  // generation failure; each names the descriptor.
  static Expected<std::unique_ptr<MoeDecode>> create(const MoeDesc& desc, const MoeConfig& config,
                                                     const CpuIsa& cpu);

  // out: [n_tokens][n_embd], overwritten. Errors: routing out of range (names token and slot).
  // One call at a time per instance: the per-call scratch buffers are members.
  Status run(const MoeWeights& weights, const float* x, const MoeRouting& routing, float* out,
             ThreadPool& pool);

  // The activation rounding the chosen kernels apply (for moe_reference).
  ActRounding act_rounding() const;
  // "gate=gemv_q4_k_avx2 up=gemv_q4_k_avx2 down=gemv_ref_Q6_K".
  std::string kernel_names() const;
  const MoeDesc& desc() const { return desc_; }
  const MoeConfig& config() const { return config_; }

 private:
  MoeDecode(const MoeDesc& desc, const MoeConfig& config) : desc_(desc), config_(config) {}
  void group_by_expert(const MoeRouting& routing);
  void quantize_inputs(const float* x, int64_t n_tokens, ThreadPool& pool);
  void run_gate_up(const MoeWeights& weights, ThreadPool& pool);
  void run_act_down(const MoeWeights& weights, ThreadPool& pool);
  void combine(const MoeRouting& routing, float* out, ThreadPool& pool);

  MoeDesc desc_;
  MoeConfig config_;
  std::unique_ptr<GemvKernel> gate_, up_, down_;
  // Per-call scratch, kept to avoid allocation at every layer.
  std::vector<int32_t> active_experts_;   // experts with >= 1 token, ascending
  std::vector<int64_t> pair_begin_;       // [active + 1]: first pair of each active expert
  std::vector<int64_t> pair_token_;       // [pairs]: token of each (token, expert) pair
  std::vector<int64_t> slot_pair_;        // [n_tokens * top_k]: pair of each routing slot
  std::vector<uint8_t> xq_gate_, xq_up_;  // [n_tokens] quantized activations
  std::vector<uint8_t> act_gate_, act_up_, act_down_;  // [pairs] gathered kernel inputs
  std::vector<float> g_, u_, d_;          // [pairs][n_ff], [pairs][n_ff], [pairs][n_embd]
};

}  // namespace ktx::cpu
