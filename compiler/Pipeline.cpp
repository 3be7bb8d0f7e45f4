// The pass pipelines of ktc (see Pipeline.h).
#include "compiler/Pipeline.h"

#include "compiler/passes/Passes.h"

namespace ktx::kt {

void build_plan_pipeline(mlir::PassManager& pm, const PipelineOptions& options) {
  KtPlaceOptions place;
  place.hwPath = options.hw_path;
  place.gpu = options.gpu;
  place.vramBudget = options.vram_budget;
  place.ctx = options.ctx;
  place.gpuOps = options.gpu_ops;
  pm.addPass(createKtPlace(place));
  pm.addPass(createKtVerifyPlaced());
  KtSelectKernelsOptions select;
  select.hwPath = options.hw_path;
  select.kernels = options.kernels;
  select.kvCache = options.kv_cache;
  select.prefillAct = options.prefill_act;
  pm.addPass(createKtSelectKernels(select));
  KtStreamOptions stream;
  stream.hwPath = options.hw_path;
  stream.stream = options.stream;
  stream.streamChunk = options.stream_chunk;
  stream.explain = options.explain;
  pm.addPass(createKtStream(stream));
}

void build_emit_pipeline(mlir::PassManager& pm) { pm.addPass(createKtVerifyPlaced()); }

}  // namespace ktx::kt
