// The plan pipeline of ktc, in one place: the passes `ktc plan` runs on an imported module, in
// order. Tools build it here instead of assembling passes themselves.
#pragma once

#include <string>

#include "mlir/Pass/PassManager.h"

namespace ktx::kt {

struct PipelineOptions {
  std::string hw_path;             // host profile (TOML)
  std::string kernels = "fast";    // fast | reference (--kt-select-kernels)
  std::string kv_cache = "f16";    // f16 | bf16 | f32 | q8_0: KV cache of fast attention ops
  std::string gpu = "auto";        // auto | on | off (--kt-place)
  int64_t vram_budget = 0;         // bytes; 0 = the GPU's memory less the profile's reserve
  int64_t ctx = 0;                 // KV positions to provision; 0 = the module's kt.context
  std::string gpu_ops;             // op kinds the GPU may take, comma-separated; "" = all
  std::string prefill_act = "auto";  // auto | i8 | i16: AVX-512 K-quant prefill activations
  std::string stream = "auto";     // auto | on | off: stream routed experts to the GPU (--kt-stream)
  int64_t stream_chunk = 0;        // most tokens per prefill call when streaming; 0 = choose
  bool explain = false;            // --kt-stream prints its costs and choices to stdout
};

// place -> verify placement -> select kernels -> stream. Plan emission (codegen/EmitPlan.h) follows.
void build_plan_pipeline(mlir::PassManager& pm, const PipelineOptions& options);

// For IR given as text (already placed, maybe edited): only the placement check, so what the
// file says is what the plan records.
void build_emit_pipeline(mlir::PassManager& pm);

}  // namespace ktx::kt
