// Measured kernel configuration: `ktx-run tune` times candidate MoeConfigs (row blocking,
// K unroll, threads) of the real MoeDecode on random weights of the exact descriptor a model
// needs on this host, and records the fastest in the hardware profile's [tuned] table
// (HwProfile::tuned, keyed by MoeDesc::to_string(), value MoeConfig::to_string()).
// select_moe_config() is a rule of thumb; this is the measurement that replaces it per host.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/hw/hw_profile.h"
#include "common/util/status.h"
#include "common/kernels/kernel_desc.h"

namespace ktx::cpu {

// Routed-expert layer shape of a model (what a decode descriptor needs besides types).
struct MoeShape {
  std::string name;
  int64_t n_embd = 0, n_ff = 0, n_expert = 0, top_k = 0;
};
// Built-in shapes: "deepseek-v3" (7168 -> 2048, 256 experts, top-8) and "qwen3-30b-a3b"
// (2048 -> 768, 128 experts, top-8). Error lists the known names.
Expected<MoeShape> moe_preset(const std::string& name);
// All built-in shapes, in a fixed order (the benchmarks iterate these).
const std::vector<MoeShape>& moe_presets();

struct TuneOptions {
  int max_threads = 0;          // largest pool tried; 0 = one thread per physical core
  int64_t tokens = 1;           // tokens per timed call (decode batch), <= desc.max_tokens
  double seconds = 5.0;         // time budget for one descriptor, shared by its candidates
  // Expert weights actually allocated (the DeepSeek-V3 layer is 6.3 GB); routing stays
  // within the allocated experts. Keep it well above the last-level cache so weights stream
  // from DRAM as in a real decode step.
  uint64_t max_weight_bytes = 2ull << 30;
  uint64_t seed = 1;
  std::function<void(const std::string&)> progress;  // one line per candidate (may be empty)
};

struct TuneMeasurement {
  MoeConfig config;
  std::string kernels;   // MoeDecode::kernel_names()
  double us = 0.0;       // median microseconds per call
  double gbs = 0.0;      // expert weight bytes touched / time, GB/s
  int iterations = 0;
};

struct TuneResult {
  MoeDesc desc;
  std::vector<TuneMeasurement> runs;  // in candidate order
  size_t best = 0;                    // index into runs
  const TuneMeasurement& winner() const { return runs[best]; }
};

// Candidates for a descriptor: rows_per_task in {8..256} (powers of two not above
// max(n_ff, n_embd)) plus select_moe_config's choice, unroll 1..4, threads {max, 3/4, 1/2}.
std::vector<MoeConfig> tune_candidates(const MoeDesc& desc, int max_threads);

// Times every candidate (candidates whose kernels ignore `unroll` are timed once) and returns
// the measurements. Errors: invalid descriptor, tokens outside [1, max_tokens], a descriptor
// tier this CPU lacks, kernel generation failures (each names the descriptor).
Expected<TuneResult> tune_moe_decode(const MoeDesc& desc, const CpuIsa& cpu,
                                     const TuneOptions& options);

// hw->tuned[desc] = winner's config.
void record_tuned(const TuneResult& result, HwProfile* hw);

// The measurements as an aligned text table, winner marked with '*'.
std::string format_tune_table(const TuneResult& result);

// The whole `ktx-run tune` step on a profile file: load `hw_path` (errors name the file),
// tune every descriptor, record the winners in its [tuned] table and save it back with every
// other key unchanged. `on_result` sees each descriptor's measurements (for printing).
Status tune_profile(const std::string& hw_path, const std::vector<MoeDesc>& descs,
                    const CpuIsa& cpu, const TuneOptions& options,
                    const std::function<void(const TuneResult&)>& on_result);

}  // namespace ktx::cpu
