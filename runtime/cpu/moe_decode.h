// Fused routed-expert layer for decode (a few tokens per expert, memory-bound): the fast twin
// of moe_reference(). Per call:
//   1. each token's activations are quantized once per format the gate/up kernels read;
//   2. gate and up GEMVs of every active expert, split over (expert, block of n_ff rows);
//   3. h = SiLU(gate)·up per (token, expert) pair, quantized for the down kernel;
//   4. down GEMVs, split over (expert, block of n_embd rows);
//   5. out[t] = Σ_j w_tj · down_{e_tj}(h_tj), summed in slot order (deterministic).
// Kernels come from make_gemv() (generated where the CPU allows, reference otherwise), so every
// supported weight type works; activation quantization is the only approximation.
//
// By default the five steps run as ONE thread-pool phase (MoeDecodeOptions::fused): tasks are
// ordered quantize < gate/up < down < combine, and a task that needs earlier results spins on a
// per-expert (or per-row-block) counter: the last gate/up task of an expert computes its h, a
// down task waits for its expert's h, a combine task for every expert's rows in its block.
// One-token decode is a few hundred microseconds, so the four barriers saved are a visible
// share. The results are bit-identical to the phased order (the same operations per element).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "runtime/cpu/jit/gemv.h"
#include "runtime/cpu/jit/gemv_avx512.h"
#include "runtime/cpu/moe_desc.h"
#include "runtime/cpu/moe_ref.h"
#include "runtime/cpu/thread_pool.h"

namespace ktx::cpu {

// Knobs beyond MoeConfig, for benchmarks and tuning; the defaults are the measured best.
struct MoeDecodeOptions {
  Avx512Tuning gemv;   // software prefetch of the generated AVX-512 kernels
  bool fused = true;   // one pool phase per layer; false: five phases with barriers
};

class MoeDecode {
 public:
  // Generates (or picks) the three kernels. Errors: invalid descriptor or config, kernel
  // generation failure; each names the descriptor.
  static Expected<std::unique_ptr<MoeDecode>> create(const MoeDesc& desc, const MoeConfig& config,
                                                     const CpuIsa& cpu);
  static Expected<std::unique_ptr<MoeDecode>> create(const MoeDesc& desc, const MoeConfig& config,
                                                     const CpuIsa& cpu,
                                                     const MoeDecodeOptions& options);

  // out: [n_tokens][n_embd], overwritten. Errors: routing out of range (names token and slot).
  // One call at a time per instance: the per-call scratch buffers are members. The fused path
  // needs the pool to hand tasks out in ascending order (ThreadPool's atomic counter does):
  // a task only ever waits for tasks with smaller indices, so waiting cannot deadlock.
  Status run(const MoeWeights& weights, const float* x, const MoeRouting& routing, float* out,
             ThreadPool& pool);

  // The activation rounding the chosen kernels apply (for moe_reference).
  ActRounding act_rounding() const;
  // "gate=gemv_q4_k_avx2 up=gemv_q4_k_avx2 down=gemv_ref_Q6_K".
  std::string kernel_names() const;
  const MoeDesc& desc() const { return desc_; }
  const MoeConfig& config() const { return config_; }
  const MoeDecodeOptions& options() const { return options_; }

 private:
  MoeDecode(const MoeDesc& desc, const MoeConfig& config, const MoeDecodeOptions& options)
      : desc_(desc), config_(config), options_(options) {}
  void group_by_expert(const MoeRouting& routing);
  void size_buffers();
  // The tasks both paths are made of.
  void quantize_task(const float* x, int64_t token, int64_t chunk);
  void gate_up_task(const MoeWeights& weights, int64_t active, int64_t chunk);
  void h_task(int64_t pair);  // h = SiLU(g)·u, quantized for down
  void down_task(const MoeWeights& weights, int64_t active, int64_t chunk);
  void combine_task(const MoeRouting& routing, float* out, int64_t chunk);
  void run_phased(const MoeWeights& weights, const float* x, const MoeRouting& routing,
                  float* out, ThreadPool& pool);
  void run_fused(const MoeWeights& weights, const float* x, const MoeRouting& routing,
                 float* out, ThreadPool& pool);

  MoeDesc desc_;
  MoeConfig config_;
  MoeDecodeOptions options_;
  std::unique_ptr<GemvKernel> gate_, up_, down_;
  // Per-call scratch, kept to avoid allocation at every layer.
  std::vector<int32_t> active_experts_;   // experts with >= 1 token, ascending
  std::vector<int64_t> pair_begin_;       // [active + 1]: first pair of each active expert
  std::vector<int64_t> pair_token_;       // [pairs]: token of each (token, expert) pair
  std::vector<int64_t> slot_pair_;        // [n_tokens * top_k]: pair of each routing slot
  std::vector<uint8_t> act_gate_, act_up_, act_down_;  // [pairs] gathered kernel inputs
  bool shared_act_ = false;               // gate and up read one format: act_up_ unused
  std::vector<float> g_, u_, d_;          // [pairs][n_ff], [pairs][n_ff], [pairs][n_embd]
  // Fused path: [0] inputs quantized, then per active expert gate/up chunks done and h ready,
  // then per down row block the experts done.
  std::unique_ptr<std::atomic<int64_t>[]> counters_;
  int64_t counters_size_ = 0;
};

}  // namespace ktx::cpu
