// Passes of ktc, each one file under compiler/passes/ and runnable alone from `ktc opt`.
#ifndef KT_PASSES_TD
#define KT_PASSES_TD

include "mlir/Pass/PassBase.td"

def KtPlace : Pass<"kt-place", "::mlir::ModuleOp"> {
  let summary = "Place every kt op on a device of the host profile";
  let description = [{
    Reads the host profile (`hw=host.toml`) and records `device` on every kt op. Without a GPU
    (or with gpu=off) everything goes to the CPU. With one, attention (with its KV cache for
    `ctx` positions), norms, residual adds, routers, shared experts, dense FFNs and the lm_head
    go to the GPU in that priority order while the VRAM budget holds (the profile's GPU memory
    less its reserve, or `vram-budget`); routed experts and the embedding lookup stay on the
    CPU. GPU ops get `gpu_bytes` (weights + KV cache). What does not fit, or has a weight type
    no GPU kernel reads, stays on the CPU with one remark saying how much and why. An op whose
    weights no CPU kernel reads is an error at that op, with a note naming the host's CPU.
  }];
  let options = [
    Option<"hwPath", "hw", "std::string", /*default=*/"\"\"",
           "host profile (TOML, as written by `ktx-run probe`)">,
    Option<"gpu", "gpu", "std::string", /*default=*/"\"auto\"",
           "auto (use the profile's first GPU if it has one), on (require one) or off">,
    Option<"vramBudget", "vram-budget", "int64_t", /*default=*/"0",
           "bytes of GPU memory the plan may use (0: the GPU's memory less the profile's reserve)">,
    Option<"ctx", "ctx", "int64_t", /*default=*/"0",
           "context the KV cache is provisioned for (0: the profile's budgets.context)">,
    Option<"gpuOps", "gpu-ops", "std::string", /*default=*/"\"\"",
           "comma-separated op kinds the GPU may take (rms_norm, add, router, attention, "
           "shared_experts, dense_ffn, lm_head); empty: all of them">,
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
      kernel_prefill = "moe:...", config_prefill = "cfg:..." and prefill_min_tokens = N (the
      fewest tokens per call that run it: AMX from 17, AVX-512 from 8 (int8 activations,
      config act=i8; prefill-act=i16: the int16 GEMM from 24) tokens per expert on
      average), or kernel_prefill = "reference" when the tier has no prefill GEMM for the
      layer's types (AVX2; a weight type without an exact int8 repack).
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
           "KV cache element type of fast attention ops: f16, bf16, f32 or q8_0">,
    Option<"prefillAct", "prefill-act", "std::string", /*default=*/"\"auto\"",
           "activations of the AVX-512 K-quant prefill GEMM: auto (= i8), i8 or i16">,
  ];
}

#endif  // KT_PASSES_TD
