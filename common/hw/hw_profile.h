// Hardware profile: what a host has (CPU ISA, cores, NUMA, caches, memory bandwidth, GPUs) and
// the budgets a plan may use. Stored as TOML (schema in docs/hw-profile.md), written by
// `ktx-run probe`, read by `ktc plan --hw`.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/util/status.h"

namespace ktx {

struct CpuIsa {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
  bool avx_vnni = false;
  bool amx_tile = false;
  bool amx_int8 = false;
  bool amx_bf16 = false;
  // Names of the features that are set, in a fixed order ("avx2", "fma", ..., "amx_bf16").
  std::vector<std::string> names() const;

  // Every feature name this struct knows, in the same fixed order as names().
  static const std::vector<std::string>& all_names();
  // The flag for a feature name; nullptr for a name this version does not know.
  bool* flag(std::string_view name);
  const bool* flag(std::string_view name) const;
  bool operator==(const CpuIsa&) const = default;
};

// Arithmetic ceilings measured by `ktx-run probe` over all physical cores (0 = not measured or
// not present): the matrix units' and the vector FMA units' peaks. Kernel efficiency in
// benchmarks is reported against these.
struct ComputePeaks {
  double amx_int8_tops = 0.0;      // int8 tile products, 1e12 ops/s (multiply + add = 2)
  double amx_bf16_tflops = 0.0;    // bf16 tile products, 1e12 flop/s
  double avx512_fma_tflops = 0.0;  // 512-bit float FMA
  double avx2_fma_tflops = 0.0;    // 256-bit float FMA

  bool operator==(const ComputePeaks&) const = default;
};

struct CpuInfo {
  std::string model_name;
  int sockets = 1;
  int physical_cores = 1;
  int logical_cpus = 1;
  int numa_nodes = 1;
  uint64_t l1d_bytes = 0;    // per core
  uint64_t l2_bytes = 0;     // per core
  uint64_t l3_bytes = 0;     // total
  CpuIsa isa;
  ComputePeaks peaks;

  bool operator==(const CpuInfo&) const = default;
};

struct MemoryInfo {
  uint64_t total_bytes = 0;
  double read_bw_gbs = 0.0;  // measured streaming read bandwidth, GB/s (1e9)

  bool operator==(const MemoryInfo&) const = default;
};

struct GpuInfo {
  std::string name;
  std::string arch;          // "sm_90a", "sm_89", ...
  uint64_t memory_bytes = 0;
  double mem_bw_gbs = 0.0;
  double pcie_bw_gbs = 0.0;
  // Float GEMM throughput of KTX's GPU kernels, 1e12 flop/s; 0 = not measured (ktc's kt-stream
  // then estimates it from the arch). TOML key gemm_tflops, written only when set.
  double gemm_tflops = 0.0;

  bool operator==(const GpuInfo&) const = default;
};

struct Budgets {
  uint64_t vram_reserve_bytes = 1ull << 30;  // left free on each GPU
  uint64_t host_reserve_bytes = 4ull << 30;  // left free in host memory
  int threads = 0;                           // CPU threads for experts; 0 = physical cores
  int64_t context = 4096;                    // KV-cache length the plan provisions

  bool operator==(const Budgets&) const = default;
};

struct HwProfile {
  int schema_version = 1;
  std::string hostname;
  CpuInfo cpu;
  MemoryInfo memory;
  std::vector<GpuInfo> gpus;
  Budgets budgets;
  // Kernel configurations measured fastest on this host by `ktx-run tune`, keyed by the
  // kernel descriptor string (common/kernels/kernel_desc.h MoeDesc::to_string(), e.g.
  // "moe:n_embd=7168,...,isa=avx512") with the MoeConfig string as value ("cfg:..."). TOML
  // table [tuned]. ktc's kernel selection uses an entry when its descriptor matches exactly.
  std::map<std::string, std::string> tuned;

  // Parse TOML text / file. Errors: "host.toml:12:5: ..." for syntax, and
  // "host.toml: cpu.physical_cores: expected a positive integer, found \"x\"" for schema.
  static Expected<HwProfile> from_toml_string(const std::string& text, const std::string& source);
  static Expected<HwProfile> load(const std::string& path);
  std::string to_toml() const;
  Status save(const std::string& path) const;

  bool operator==(const HwProfile&) const = default;
};

// Probe this machine: CPUID features (and AMX permission where the OS gates it), topology
// (hwloc), memory size, a streaming read-bandwidth measurement (threads over a large buffer,
// `bw_seconds` of measurement), GPUs through the CUDA runtime when it is built in and present.
Expected<HwProfile> probe_host(double bw_seconds = 0.5);

struct ProbeOptions {
  double bw_seconds = 0.5;       // how long the bandwidth measurement may run
  uint64_t bw_buffer_bytes = 0;  // 0 = 1 GiB or 1/8 of RAM, whichever is smaller
  bool gpus = true;              // query the CUDA runtime (when built in)
  double compute_seconds = 1.0;  // how long the compute-peak loops may run (0: skip them)
};
Expected<HwProfile> probe_host(const ProbeOptions& opts);

// Memory the system could give this process now without swapping (/proc/meminfo's
// MemAvailable: free pages plus reclaimable caches).
Expected<uint64_t> available_memory_bytes();

}  // namespace ktx
