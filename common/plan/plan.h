// Plan format v1: the only contract between ktc (which writes it) and ktx-run (which runs it).
// Binary container: magic, version, section table, checksums (layout in docs/plan-format.md).
// Sections: identity of the GGUF it was made for, the hardware it assumes, the model config,
// and the program (ops with placement and kernel choices).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/hw/hw_profile.h"
#include "common/model/config.h"
#include "common/util/status.h"

namespace ktx {

class GGUFFile;

constexpr uint32_t kPlanVersion = 1;

struct GGUFIdentity {
  std::string path;            // as given to ktc (absolute); runtime may override
  uint64_t total_size = 0;     // bytes over all split parts
  std::string hash;            // GGUFFile::identity_hash()
  uint32_t n_splits = 1;
};

// The GPU's share of a plan (ktc's --kt-place): what it may use and what the plan puts there.
struct GpuMemoryPlan {
  std::string name;             // the profile's GPU name
  int64_t budget_bytes = 0;     // VRAM the plan may use
  int64_t placed_bytes = 0;     // weights (GGUF blocks as stored) + KV caches of the GPU ops
  int64_t arena_bytes = 0;      // activation arena
  int64_t staging_bytes = 0;    // pinned host memory for the CPU-expert hand-off
  int64_t ctx = 0;              // positions the KV caches are provisioned for
  int64_t stream_bytes = 0;     // streamed routed experts (two slots + call buffers); 0 = none
  bool operator==(const GpuMemoryPlan&) const = default;
};

// What the plan assumes about the machine it runs on.
struct HwAssumption {
  std::vector<std::string> cpu_isa;  // features the chosen kernels need, e.g. {"avx2","fma"}
  std::string gpu_arch;              // "" = no GPU used
  int threads = 0;
  GpuMemoryPlan gpu;                 // meaningful when gpu_arch is set
};

// One op of the program, in execution order.
struct PlanOp {
  std::string name;                  // "blk.3.ffn_moe"
  std::string kind;                  // "embed", "rms_norm", "attention", "router", ...
  int layer = -1;                    // -1 for ops outside the blocks
  std::string device = "cpu";        // "cpu" | "gpu"
  std::vector<std::string> tensors;  // GGUF tensor names the op reads
  std::map<std::string, std::string> attrs;  // kernel descriptor, variants, ...
  // Buffers (indexes into Plan::buffers) the op reads, in operand order, and writes; out = -1
  // in plans made before buffers were assigned (the runtime asks for a re-plan).
  std::vector<int> in;
  int out = -1;
};

// One buffer of the activation arena, [n_tokens][width] per call. The memory plan reuses a
// buffer once its last reader has run, so buffers are far fewer than values.
struct PlanBuffer {
  std::string kind;   // "act" (float rows) | "route" (expert ids + weights, width = top_k)
  int64_t width = 0;  // widest value the buffer holds
};

struct Plan {
  uint32_t version = kPlanVersion;
  std::string producer;        // "ktc 0.1.0"
  GGUFIdentity gguf;
  HwAssumption hw;
  ModelConfig model;
  std::vector<PlanOp> program;
  std::vector<PlanBuffer> buffers;  // the program's arena (empty in older plans)
  // GPU kernels compiled by ktc (NVRTC) for hw.gpu_arch: one cubin holding every kernel family
  // (runtime/cuda/kernels). Empty when no op is on the GPU.
  std::vector<uint8_t> gpu_code;
};

Status write_plan(const Plan& plan, const std::string& path);
// Rejects bad magic, other versions, truncated files, bad checksums, unknown required sections,
// malformed payloads; the message names what differs.
Expected<Plan> read_plan(const std::string& path);
// Stable text dump for `ktc inspect` (FileCheck-able: fixed key order, one op per line).
std::string plan_to_text(const Plan& plan);

// Check that `f` is the GGUF the plan was made for (size + hash). Message names both sides and
// says how to re-plan: "plan was made for model.gguf (size X, hash abc...), this file has ...;
// re-run: ktc plan --hw host.toml FILE -o PLAN".
Status check_plan_gguf(const Plan& plan, const GGUFFile& f);
// Check that this host has every ISA feature (and GPU arch) the plan assumes.
Status check_plan_host(const Plan& plan, const CpuIsa& host_isa);
// Same, plus the GPU: a plan with a gpu_arch needs a GPU of that arch on the host ("sm_90a"
// hosts also run "sm_90" plans).
Status check_plan_host(const Plan& plan, const HwProfile& host);

}  // namespace ktx
