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

def KtStream : Pass<"kt-stream", "::mlir::ModuleOp"> {
  let summary = "Choose which routed-expert layers long prefill calls stream to the GPU";
  let description = [{
    For every kt.routed_experts op on the CPU, decides whether prefill calls of many tokens run
    it on the GPU instead: the runtime copies the layer's expert tensors (GGUF blocks as stored)
    over PCIe into one of two GPU slots, the next streamed layer's copy overlapping this
    layer's compute, and runs a float GEMM there. Per layer (E experts, top_k K, n_embd D,
    n_ff F, expert bytes B), for a call of N tokens:
      flops(N) = 6 N K D F
      t_gpu(N) = max(B / pcie_bw, flops(N) / gpu_rate) + 0.2 ms
      t_cpu(N) = max(B hit(N) / read_bw, flops(N) / cpu_rate), hit(N) = 1 - (1 - K/E)^N
    with pcie_bw and gpu_rate from the profile's first [[gpu]] (gemm_tflops; absent: an
    estimate by arch, sm_90 20, sm_80 12, sm_86/sm_89 10 TFLOP/s), read_bw from [memory] and
    cpu_rate from the CPU's best tier and its measured peak (AMX 0.08 x amx_int8_tops, AVX-512
    0.5 x 4 x avx512_fma_tflops, AVX2 0.5 x 2 x avx2_fma_tflops; 1 TOP/s without a peak).
    The chunk C (the most tokens one prefill call holds; stream-chunk, 0 = the largest of
    8192..512 that fits, at most the context) must fit the VRAM left after --kt-place (budget
    less the GPU ops' gpu_bytes and the arena): two slots of the largest layer, C K (2D + 2F)
    floats of per-call buffers and the arena grown from 512 to C tokens. A layer streams from
    the smallest N up to C at which the GPU wins; its ops (both phases) get
      stream = "gpu", stream_min_tokens = N, stream_chunk = C, stream_bytes = B
    and the module's kt.gpu gets stream_bytes (the VRAM streaming takes). Nothing streams
    without a GPU op in the plan, without a PCIe bandwidth in the profile, with stream=off, or
    when even 512 tokens do not fit (one remark with the sizes). stream=on makes those an
    error. explain=true prints the per-layer table and totals to stdout. Run after
    --kt-place (and --kt-select-kernels).
  }];
  let options = [
    Option<"hwPath", "hw", "std::string", /*default=*/"\"\"",
           "host profile (TOML, as written by `ktx-run probe`)">,
    Option<"stream", "stream", "std::string", /*default=*/"\"auto\"",
           "auto (stream where the model says the GPU wins), on (auto, but an error when "
           "nothing can stream: no GPU, no PCIe bandwidth, no room) or off">,
    Option<"streamChunk", "stream-chunk", "int64_t", /*default=*/"0",
           "most tokens per prefill call when a layer streams (0: the largest of 8192, 4096, "
           "2048, 1024, 512 that fits the VRAM left)">,
    Option<"explain", "explain", "bool", /*default=*/"false",
           "print the per-layer costs and the choice to stdout">,
  ];
}

#endif  // KT_PASSES_TD
