// Passes of ktc, each one file under compiler/passes/ and runnable alone from `ktc opt`.
#ifndef KT_PASSES_TD
#define KT_PASSES_TD

include "mlir/Pass/PassBase.td"

def KtPlace : Pass<"kt-place", "::mlir::ModuleOp"> {
  let summary = "Place every kt op on a device of the host profile";
  let description = [{
    Reads the host profile (`hw=host.toml`) and records `device` on every kt op. This walking
    skeleton places everything on the CPU; an op whose weights have a ggml type no CPU kernel
    supports is an error at that op, with a note naming the host's CPU features.
  }];
  let options = [
    Option<"hwPath", "hw", "std::string", /*default=*/"\"\"",
           "host profile (TOML, as written by `ktx-run probe`)">,
  ];
}

def KtVerifyPlaced : Pass<"kt-verify-placed", "::mlir::ModuleOp"> {
  let summary = "Check that every kt op has been placed on a known device";
  let description = [{
    Fails at the first op without a `device` attribute or with a device other than "cpu" or
    "gpu". Run before plan emission so the plan never holds an unplaced op.
  }];
}

def KtSelectKernels : Pass<"kt-select-kernels", "::mlir::ModuleOp"> {
  let summary = "Choose the CPU kernels of every routed-expert op for the host profile";
  let description = [{
    For every kt.routed_experts op, builds the MoE kernel descriptor (shapes, gate/up/down
    ggml types, tokens per call, the best ISA tier the profile's CPU allows) and its
    configuration (the profile's [tuned] entry for that exact descriptor, else the default
    selection), and records them as string attributes the runtime reads back:
      kernel_decode = "moe:...", config_decode = "cfg:...",
      kernel_prefill = "moe:..." and config_prefill = "cfg:..." (or kernel_prefill = "reference"
      when a weight type has no exact int8 repack).
    With kernels=reference the op gets kernel = "reference" (the exact float32 engine).
    Fast attention ops also get kv_cache = the kv-cache option (their cache's element type).
    Run after --kt-place. Bad options and invalid descriptors are errors at the op.
  }];
  let options = [
    Option<"hwPath", "hw", "std::string", /*default=*/"\"\"",
           "host profile (TOML, as written by `ktx-run probe`)">,
    Option<"kernels", "kernels", "std::string", /*default=*/"\"fast\"",
           "fast (generated/int8 kernels) or reference (exact float32)">,
    Option<"kvCache", "kv-cache", "std::string", /*default=*/"\"f16\"",
           "KV cache element type of fast attention ops: f16, bf16 or f32">,
  ];
}

#endif  // KT_PASSES_TD
