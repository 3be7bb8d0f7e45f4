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
//
// On a pool with several NUMA nodes (MoeDecodeOptions::numa) the layer runs phased, and the
// gate/up and down phases hand each (expert, row chunk) task to the node whose memory holds
// those weight rows (ThreadPool::parallel_for_nodes: a node's workers drain its queue first,
// then help the others). Where the rows live is asked of the kernel once per weights
// (move_pages through memory_node(); nothing is moved or replicated), so the split follows
// however the model was placed (first touch, `numactl --interleave`, ...). The cross-phase
// waits of the fused order assume one ascending task counter, which per-node queues do not
// give; the barriers cost little next to a multi-node layer's weight stream.
#pragma once

#include <functional>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "runtime/cpu/jit/gemv.h"
#include "runtime/cpu/jit/gemv_avx512.h"
#include "common/kernels/kernel_desc.h"
#include "runtime/cpu/moe_ref.h"
#include "runtime/cpu/thread_pool.h"

namespace ktx::cpu {

// Knobs beyond MoeConfig, for benchmarks and tuning; the defaults are the measured best.
struct MoeDecodeOptions {
  Avx512Tuning gemv;   // software prefetch of the generated AVX-512 kernels
  bool fused = true;   // one pool phase per layer; false: five phases with barriers
  bool numa = true;    // pools with several nodes: rows to the node that holds them
  // Which node holds [addr, addr + bytes); empty: memory_node() (topology.h). Tests inject a
  // map; values outside [0, pool nodes) count as node 0.
  std::function<int(const void* addr, size_t bytes)> node_of;
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
  // Node-aware path: gate/up and down tasks handed to each node in the last call (empty when
  // the last call did not take that path).
  const std::vector<int64_t>& last_node_tasks() const { return node_tasks_; }

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
                  float* out, ThreadPool& pool, bool by_node);
  void run_fused(const MoeWeights& weights, const float* x, const MoeRouting& routing,
                 float* out, ThreadPool& pool);
  // gu_node_ / down_node_ for these weights and node count (kept until either changes).
  void map_nodes(const MoeWeights& weights, int n_nodes);
  // Runs task(active, chunk) for every active expert's chunks, each on its node's queue.
  void run_by_node(const std::vector<int8_t>& chunk_node, int64_t chunks, ThreadPool& pool,
                   const std::function<void(int64_t, int64_t)>& task);

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
  // Node-aware path: the node of each [expert][chunk] of gate (and up) rows and of down rows,
  // for the weights at mapped_ (gate, up, down pointers) on a pool of mapped_nodes_ nodes.
  std::vector<int8_t> gu_node_, down_node_;
  const void* mapped_[3] = {nullptr, nullptr, nullptr};
  int mapped_nodes_ = 0;
  std::vector<std::vector<int64_t>> node_lists_;  // per call: tasks (active·chunks + chunk)
  std::vector<int64_t> node_tasks_;
};

}  // namespace ktx::cpu
