// The cost model of --kt-stream, free of MLIR so it can be unit-tested: for one routed-expert
// layer, how long a call of N tokens takes on the CPU (its kernels, reading the experts the
// call touches from DRAM) and on the GPU (the layer's expert bytes copied over PCIe into one
// of two slots, overlapped with the previous layer's compute, then a float GEMM), the call
// size from which the GPU wins, and how much VRAM streaming in calls of C tokens takes.
//
//   flops(N) = 2 * 3 * N * top_k * n_embd * n_ff            (gate, up, down; multiply + add)
//   t_gpu(N) = max(B / pcie, flops(N) / gpu_rate) + 0.2 ms  (copy overlaps compute; launches)
//   t_cpu(N) = max(B * hit(N) / dram, flops(N) / cpu_rate), hit(N) = 1 - (1 - top_k/E)^N
//
// The rates come from the host profile (stream_rates); the constants that turn its peaks
// into the rates the kernels reach are in StreamCost.cpp, with where each comes from.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/hw/hw_profile.h"

namespace ktx::kt {

// Call sizes the automatic chunk is chosen from, largest first (the runtime's prefill calls
// hold up to this many tokens when a layer streams).
inline constexpr int64_t kStreamChunks[] = {8192, 4096, 2048, 1024, 512};
// The tokens per call the plan's activation arena is sized for (--kt-place).
inline constexpr int64_t kArenaTokens = 512;
// Largest stream-chunk a user may ask for.
inline constexpr int64_t kMaxStreamChunk = 65536;

// The rates the model uses, resolved once from the host profile.
struct StreamRates {
  double pcie_bytes_per_s = 0;  // host -> device copies; 0: unknown (nothing streams)
  double gpu_flops = 0;         // float GEMM of KTX's GPU kernels, flop/s
  bool gpu_estimated = false;   // gpu_flops is the arch's estimate, not the profile's gemm_tflops
  double cpu_ops = 0;           // the CPU MoE kernels' arithmetic rate, ops/s
  std::string cpu_source;       // how cpu_ops was derived, for --explain
  double dram_bytes_per_s = 0;  // the profile's streaming read bandwidth
  std::string gpu_name, gpu_arch;
};

// From the profile's first GPU (the profile must have one) and its CPU.
StreamRates stream_rates(const HwProfile& hw);
// The float GEMM TFLOP/s estimated for an arch ("sm_90a" -> 20): a stand-in until the
// profile's gemm_tflops holds a measurement.
double estimated_gemm_tflops(const std::string& arch);

// One routed-expert layer as the model sees it.
struct StreamLayer {
  std::string name;  // "blk.3.ffn_moe"
  int64_t layer = -1;
  int64_t n_expert = 0, top_k = 0, n_embd = 0, n_ff = 0;
  uint64_t bytes = 0;  // ffn_{gate,up,down}_exps as stored in the GGUF
};

double moe_flops(const StreamLayer& l, int64_t n_tokens);
double gpu_seconds(const StreamLayer& l, const StreamRates& r, int64_t n_tokens);
double cpu_seconds(const StreamLayer& l, const StreamRates& r, int64_t n_tokens);
double pcie_seconds(const StreamLayer& l, const StreamRates& r);
// The smallest N in [1, chunk] from which the GPU is faster at every call size up to chunk
// (where the comparison flips once, as it does for real hosts: the smallest N where it wins);
// 0 when the GPU does not win at chunk tokens (the layer stays on the CPU).
int64_t stream_min_tokens(const StreamLayer& l, const StreamRates& r, int64_t chunk);

// VRAM streaming takes for calls of `chunk` tokens: two slots of the largest layer, the
// per-call buffers of the widest layer (gathered inputs, per-slot outputs, gate and up hidden:
// chunk * top_k * (2 n_embd + 2 n_ff) floats) and the growth of the activation arena from
// kArenaTokens to `chunk` tokens (8 buffers of the widest activation, as --kt-place sizes it).
uint64_t stream_vram_bytes(const std::vector<const StreamLayer*>& layers, int64_t chunk,
                           int64_t widest_activation);

struct StreamRequest {
  int64_t chunk = 0;              // 0: the largest of kStreamChunks that fits
  int64_t max_tokens = 0;         // tokens a call can hold at most (the context); 0: no cap
  uint64_t vram_left = 0;         // budget less placed ops and the arena
  int64_t widest_activation = 0;  // widest !kt.act of the module (lm_head excluded)
};

struct StreamPlan {
  int64_t chunk = 0;                // call size the decision was made for; 0: nothing fits
  std::vector<int64_t> min_tokens;  // per layer (same order): stream_min_tokens, 0 = CPU
  uint64_t vram_bytes = 0;          // VRAM of the layers that stream (0 when none)
  uint64_t vram_needed = 0;         // when nothing fits: what the smallest chunk would need
  int n_streamed = 0;
};

// The decision for every layer: the chunk (the request's, or the largest candidate that fits,
// at most max_tokens unless even kArenaTokens exceeds it), then each layer's crossover.
StreamPlan plan_streaming(const std::vector<StreamLayer>& layers, const StreamRates& r,
                          const StreamRequest& req);

// The --explain text: the inputs, one line per layer, and the totals per chunk-token call.
// `why_not` (non-empty) says why nothing streams (mode off, no room), printed above the table.
std::string explain_streaming(const std::vector<StreamLayer>& layers, const StreamRates& r,
                              const StreamPlan& plan, int64_t chunk, const std::string& why_not);

// "1.25 GiB" / "3.0 MiB" / "4.0 KiB".
std::string format_bytes(uint64_t bytes);

}  // namespace ktx::kt
