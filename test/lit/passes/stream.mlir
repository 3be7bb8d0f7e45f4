// --kt-stream (compiler/passes/Stream.cpp) after --kt-place, with the cost model's inputs fixed
// by Inputs/h100-stream.toml (PCIe 55 GB/s, GPU GEMM 20 TFLOP/s, AMX 0.08 x 50 TOP/s, DRAM
// 150 GB/s, context 4096). The layer: 8 experts, top-2, n_embd 256, n_ff 128; its experts are
// 573440 bytes (gate and up Q4_K 2 x 147456, down Q8_0 278528). Per call of N tokens the CPU
// spends max(573440 hit(N) / 150e9, 393216 N / 4e12) s, the GPU max(573440 / 55e9,
// 393216 N / 20e12) s + 0.2 ms: the GPU wins from 2544 tokens.
// RUN: ktc opt %s --kt-place --kt-stream --hw=%inputs/h100-stream.toml | FileCheck %s
// The VRAM streaming takes at 4096 tokens: 2 slots x 573440 + 4096 x 2 x (2 x 256 + 2 x 128)
// floats + the arena grown from 512 to 4096 tokens (8 x 3584 x 256 floats) = 55672832 bytes.
// CHECK: kt.gpu = {arch = "sm_90a", {{.*}}stream_bytes = 55672832 : i64}
// CHECK-LABEL: func.func @prefill
// CHECK: kt.routed_experts "blk.0.ffn_moe"{{.*}}device = "cpu"{{.*}}stream = "gpu", stream_bytes = 573440 : i64, stream_chunk = 4096 : i64, stream_min_tokens = 2544 : i64
// CHECK-LABEL: func.func @decode
// CHECK: kt.routed_experts "blk.0.ffn_moe"{{.*}}stream = "gpu", stream_bytes = 573440 : i64, stream_chunk = 4096 : i64, stream_min_tokens = 2544 : i64

// A chunk asked for: taken as is; below the crossover the layer stays on the CPU.
// RUN: ktc opt %s --kt-place --kt-stream=stream-chunk=3000 --hw=%inputs/h100-stream.toml | FileCheck %s --check-prefix=CHUNK
// CHUNK: kt.routed_experts "blk.0.ffn_moe"{{.*}}stream_chunk = 3000 : i64, stream_min_tokens = 2544 : i64
// RUN: ktc opt %s --kt-place --kt-stream=stream-chunk=2000 --hw=%inputs/h100-stream.toml | FileCheck %s --check-prefix=NOSTREAM
// A PCIe link of 1 GB/s: the copy alone (0.57 ms) takes longer than the CPU's 4096 tokens.
// RUN: sed 's/pcie_bw_gbs = 55.0/pcie_bw_gbs = 1.0/' %inputs/h100-stream.toml > %t.slow.toml
// RUN: ktc opt %s --kt-place --kt-stream --hw=%t.slow.toml | FileCheck %s --check-prefix=NOSTREAM
// stream=off, and a host without a GPU: no stream attributes anywhere.
// RUN: ktc opt %s --kt-place --kt-stream=stream=off --hw=%inputs/h100-stream.toml | FileCheck %s --check-prefix=NOSTREAM
// RUN: ktc opt %s --kt-place --kt-stream --hw=%host | FileCheck %s --check-prefix=NOSTREAM
// NOSTREAM-NOT: stream
// NOSTREAM: kt.routed_experts "blk.0.ffn_moe"
// NOSTREAM-NOT: stream

// A budget that holds the placed ops and the arena but not two slots and the call buffers:
// one remark with the sizes, nothing streams; stream=on makes it an error.
// RUN: ktc opt %s --kt-place=vram-budget=8388608 --kt-stream --hw=%inputs/h100-stream.toml 2>&1 | FileCheck %s --check-prefix=ROOM
// ROOM: remark: {{.*}}kt-stream: no layer streams: calls of 512 tokens need 4.1 MiB of VRAM for streaming, 1.2 MiB is left (budget 8.0 MiB less 2.8 MiB placed and 4.0 MiB of arena); raise --vram-budget
// ROOM-NOT: stream =
// RUN: not ktc opt %s --kt-place=vram-budget=8388608 --kt-stream=stream=on --hw=%inputs/h100-stream.toml 2>&1 | FileCheck %s --check-prefix=ROOMON
// ROOMON: error: {{.*}}kt-stream: stream=on but calls of 512 tokens need 4.1 MiB
// RUN: not ktc opt %s --kt-place=gpu=off --kt-stream=stream=on --hw=%inputs/h100-stream.toml 2>&1 | FileCheck %s --check-prefix=NOGPU
// NOGPU: error: kt-stream: stream=on but no op is on the GPU (--gpu off, or nothing fit the budget)
// RUN: not ktc opt %s --kt-place --kt-stream=stream=on --hw=%host 2>&1 | FileCheck %s --check-prefix=NOGPUHOST
// NOGPUHOST: error: kt-stream: stream=on but {{.*}}cpu-avx2.toml lists no {{\[\[gpu\]\]}}
// A profile without pcie_bw_gbs: a remark, nothing streams.
// RUN: grep -v pcie_bw_gbs %inputs/h100-stream.toml > %t.nopcie.toml
// RUN: ktc opt %s --kt-place --kt-stream --hw=%t.nopcie.toml 2>&1 | FileCheck %s --check-prefix=NOPCIE
// NOPCIE: remark: {{.*}}kt-stream: no layer streams: {{.*}}nopcie.toml: gpu[0].pcie_bw_gbs is 0 (not measured
// NOPCIE-NOT: stream =

// explain=true: the inputs, the layer's line and the totals on stdout, before the IR. Without
// gemm_tflops (and on sm_89) the GPU's rate is the arch's estimate.
// RUN: ktc opt %s --kt-place --kt-stream=explain=true --hw=%inputs/h100-stream.toml | FileCheck %s --check-prefix=EXPLAIN
// EXPLAIN: kt-stream: routed experts, CPU or streamed to GPU 'NVIDIA H100 80GB HBM3' (sm_90a), per call of 4096 tokens
// EXPLAIN-NEXT: inputs: PCIe 55 GB/s; GPU GEMM 20 TFLOP/s (host profile gemm_tflops); CPU 4 TOP/s (AMX: 0.08 x amx_int8_tops 50); DRAM 150 GB/s
// EXPLAIN-NEXT: layer     experts   PCIe ms     GPU ms     CPU ms  choice
// EXPLAIN-NEXT: 0       560.0 KiB     0.010      0.281      0.403  stream from 2544 tokens
// EXPLAIN-NEXT: MoE per 4096-token call: all-CPU 0.40 ms, this plan 0.28 ms (1 of 1 layers streamed); streaming VRAM 53.1 MiB
// EXPLAIN-NEXT: module attributes
// RUN: sed -e '/gemm_tflops/d' -e 's/sm_90a/sm_89/' %inputs/h100-stream.toml > %t.est.toml
// RUN: ktc opt %s --kt-place --kt-stream=explain=true --hw=%t.est.toml | FileCheck %s --check-prefix=EST
// EST: GPU GEMM 10 TFLOP/s (estimated from sm_89: set {{\[\[gpu\]\]}} gemm_tflops)
// RUN: ktc opt %s --kt-place --kt-stream="stream=off explain=true" --hw=%inputs/h100-stream.toml | FileCheck %s --check-prefix=EXPOFF
// EXPOFF: stream=off: every layer stays on the CPU
// EXPOFF: 0       560.0 KiB {{.*}}  cpu
// RUN: ktc opt %s --kt-place --kt-stream=explain=true --hw=%host | FileCheck %s --check-prefix=EXPNOGPU
// EXPNOGPU: kt-stream: {{.*}}cpu-avx2.toml lists no {{\[\[gpu\]\]}}; every routed-expert layer runs on the CPU

// Bad option values: one error each, naming the option.
// RUN: not ktc opt %s --kt-place --kt-stream=stream=maybe --hw=%inputs/h100-stream.toml 2>&1 | FileCheck %s --check-prefix=BADSTREAM
// BADSTREAM: ktc: error: kt-stream: stream=maybe: expected auto, on or off
// RUN: not ktc opt %s --kt-place --kt-stream=stream-chunk=-5 --hw=%inputs/h100-stream.toml 2>&1 | FileCheck %s --check-prefix=BADCHUNK
// BADCHUNK: ktc: error: kt-stream: stream-chunk=-5: expected 0 (choose) or a call size in [1, 65536]
func.func @prefill(%tok: !kt.tokens) -> !kt.act<400> {
  %h = kt.embed "token_embd"(%tok) {layer = -1 : i64, weights = [#kt.tensor<"token_embd.weight", "Q8_0", [256, 400]>]} : (!kt.tokens) -> !kt.act<256>
  %n = kt.rms_norm "blk.0.attn_norm"(%h) {eps = 1.0e-06 : f32, layer = 0 : i64, weights = [#kt.tensor<"blk.0.attn_norm.weight", "F32", [256]>]} : (!kt.act<256>) -> !kt.act<256>
  %a = kt.attention "blk.0.attn"(%n) {kind = "gqa", n_head = 4 : i64, n_head_kv = 2 : i64, head_dim_k = 64 : i64, head_dim_v = 64 : i64, rope_style = "neox", n_rot = 64 : i64, rope_base = 1.0e+06 : f32, attn_scale = 0.125 : f32, layer = 0 : i64, weights = [#kt.tensor<"blk.0.attn_q.weight", "Q4_K", [256, 256]>, #kt.tensor<"blk.0.attn_output.weight", "Q6_K", [256, 256]>]} : (!kt.act<256>) -> !kt.act<256>
  %h1 = kt.add "blk.0.attn_residual"(%h, %a) {layer = 0 : i64, weights = []} : (!kt.act<256>, !kt.act<256>) -> !kt.act<256>
  %r = kt.router "blk.0.ffn_router"(%h1) {gating = "softmax", n_expert = 8 : i64, top_k = 2 : i64, n_group = 1 : i64, n_group_used = 1 : i64, scale = 1.0 : f32, layer = 0 : i64, weights = [#kt.tensor<"blk.0.ffn_gate_inp.weight", "F32", [256, 8]>]} : (!kt.act<256>) -> !kt.route<2>
  %m = kt.routed_experts "blk.0.ffn_moe"(%h1, %r) {n_expert = 8 : i64, top_k = 2 : i64, n_ff = 128 : i64, layer = 0 : i64, weights = [#kt.tensor<"blk.0.ffn_gate_exps.weight", "Q4_K", [256, 128, 8]>, #kt.tensor<"blk.0.ffn_up_exps.weight", "Q4_K", [256, 128, 8]>, #kt.tensor<"blk.0.ffn_down_exps.weight", "Q8_0", [128, 256, 8]>]} : (!kt.act<256>, !kt.route<2>) -> !kt.act<256>
  %s = kt.shared_experts "blk.0.ffn_shexp"(%m) {n_ff = 256 : i64, gated, layer = 0 : i64, weights = [#kt.tensor<"blk.0.ffn_gate_shexp.weight", "Q8_0", [256, 256]>, #kt.tensor<"blk.0.ffn_up_shexp.weight", "Q8_0", [256, 256]>, #kt.tensor<"blk.0.ffn_down_shexp.weight", "Q8_0", [256, 256]>, #kt.tensor<"blk.0.ffn_gate_inp_shexp.weight", "F32", [256]>]} : (!kt.act<256>) -> !kt.act<256>
  %d = kt.dense_ffn "blk.0.ffn"(%s) {n_ff = 512 : i64, layer = 0 : i64, weights = [#kt.tensor<"blk.0.ffn_gate.weight", "Q5_K", [256, 512]>, #kt.tensor<"blk.0.ffn_up.weight", "Q5_K", [256, 512]>, #kt.tensor<"blk.0.ffn_down.weight", "Q6_K", [512, 256]>]} : (!kt.act<256>) -> !kt.act<256>
  %o = kt.lm_head "output"(%d) {layer = -1 : i64, weights = [#kt.tensor<"output.weight", "F16", [256, 400]>]} : (!kt.act<256>) -> !kt.act<400>
  return %o : !kt.act<400>
}
func.func @decode(%tok: !kt.tokens) -> !kt.act<400> {
  %h = kt.embed "token_embd"(%tok) {layer = -1 : i64, weights = [#kt.tensor<"token_embd.weight", "Q8_0", [256, 400]>]} : (!kt.tokens) -> !kt.act<256>
  %n = kt.rms_norm "blk.0.attn_norm"(%h) {eps = 1.0e-06 : f32, layer = 0 : i64, weights = [#kt.tensor<"blk.0.attn_norm.weight", "F32", [256]>]} : (!kt.act<256>) -> !kt.act<256>
  %a = kt.attention "blk.0.attn"(%n) {kind = "gqa", n_head = 4 : i64, n_head_kv = 2 : i64, head_dim_k = 64 : i64, head_dim_v = 64 : i64, rope_style = "neox", n_rot = 64 : i64, rope_base = 1.0e+06 : f32, attn_scale = 0.125 : f32, layer = 0 : i64, weights = [#kt.tensor<"blk.0.attn_q.weight", "Q4_K", [256, 256]>, #kt.tensor<"blk.0.attn_output.weight", "Q6_K", [256, 256]>]} : (!kt.act<256>) -> !kt.act<256>
  %h1 = kt.add "blk.0.attn_residual"(%h, %a) {layer = 0 : i64, weights = []} : (!kt.act<256>, !kt.act<256>) -> !kt.act<256>
  %r = kt.router "blk.0.ffn_router"(%h1) {gating = "softmax", n_expert = 8 : i64, top_k = 2 : i64, n_group = 1 : i64, n_group_used = 1 : i64, scale = 1.0 : f32, layer = 0 : i64, weights = [#kt.tensor<"blk.0.ffn_gate_inp.weight", "F32", [256, 8]>]} : (!kt.act<256>) -> !kt.route<2>
  %m = kt.routed_experts "blk.0.ffn_moe"(%h1, %r) {n_expert = 8 : i64, top_k = 2 : i64, n_ff = 128 : i64, layer = 0 : i64, weights = [#kt.tensor<"blk.0.ffn_gate_exps.weight", "Q4_K", [256, 128, 8]>, #kt.tensor<"blk.0.ffn_up_exps.weight", "Q4_K", [256, 128, 8]>, #kt.tensor<"blk.0.ffn_down_exps.weight", "Q8_0", [128, 256, 8]>]} : (!kt.act<256>, !kt.route<2>) -> !kt.act<256>
  %o = kt.lm_head "output"(%m) {layer = -1 : i64, weights = [#kt.tensor<"output.weight", "F16", [256, 400]>]} : (!kt.act<256>) -> !kt.act<400>
  return %o : !kt.act<400>
}
