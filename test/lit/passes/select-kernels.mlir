// Mirrors compiler/passes/SelectKernels.cpp: every kt.routed_experts op gets its decode
// descriptor/config (and, on AMX hosts, a prefill pair where the gate and up types repack
// exactly to int8; else kernel_prefill = "reference": prefill runs the decode kernels) for the
// host profile; kernels=reference marks it "reference".
// %host is the AVX2 example host: tier avx2, 8 threads, context 2048.
// RUN: ktc opt %s --split-input-file --kt-place --kt-select-kernels --hw=%host | FileCheck %s
// RUN: ktc opt %s --split-input-file --kt-place --kt-select-kernels=kernels=reference --hw=%host | FileCheck %s --check-prefix=REF
// An AMX host gets the amx tier.
// RUN: ktc opt %s --split-input-file --kt-place=gpu=off --kt-select-kernels --hw=%inputs/spr-4090.toml | FileCheck %s --check-prefix=SPR
// Bad options: an error at the op they would apply to.
// RUN: not ktc opt %s --split-input-file --kt-select-kernels=kernels=fastest --hw=%host 2>&1 | FileCheck %s --check-prefix=BADOPT
// RUN: not ktc opt %s --split-input-file --kt-select-kernels 2>&1 | FileCheck %s --check-prefix=NOHW
// RUN: not ktc opt %s --split-input-file --kt-select-kernels=kv-cache=f8 --hw=%host 2>&1 | FileCheck %s --check-prefix=BADKV
// BADKV: kt-select-kernels: kv-cache=f8: expected f16, bf16, f32 or q8_0

// Q4_K gate/up and Q8_0 down: decode kernels; the AVX2 host has no prefill GEMM (only AMX
// does), so prefill is "reference" there. Attributes print sorted by name.
// CHECK-LABEL: func.func @moe
// CHECK: kt.routed_experts "blk.0.ffn_moe"
// CHECK-SAME: config_decode = "cfg:rows_per_task=8,unroll=2,threads=8"
// CHECK-NOT: config_prefill
// CHECK-SAME: device = "cpu"
// CHECK-SAME: kernel_decode = "moe:n_embd=256,n_ff=128,n_expert=8,top_k=2,gate=Q4_K,up=Q4_K,down=Q8_0,max_tokens=16,isa=avx2"
// CHECK-SAME: kernel_prefill = "reference"
// Other ops with weight matrices get the linear-layer GEMVs at the host's tier.
// CHECK: kt.shared_experts "blk.0.ffn_shexp"
// CHECK-SAME: device = "cpu"
// CHECK-SAME: isa = "avx2"
// CHECK-SAME: kernel = "gemv"
// CHECK-SAME: linears = "blk.0.ffn_gate_shexp.weight=linear:type=Q8_0,k=256,n_rows=256,isa=avx2;blk.0.ffn_up_shexp.weight=linear:type=Q8_0,k=256,n_rows=256,isa=avx2;blk.0.ffn_down_shexp.weight=linear:type=Q8_0,k=256,n_rows=256,isa=avx2"
// REF-LABEL: func.func @moe
// REF: kt.routed_experts "blk.0.ffn_moe"
// REF-NOT: kernel_decode
// REF-SAME: kernel = "reference"
// REF: kt.shared_experts "blk.0.ffn_shexp"
// REF-NOT: isa
// REF-SAME: kernel = "reference"
// REF-NOT: linears
// SPR-LABEL: func.func @moe
// SPR: config_prefill = "cfg:
// SPR-SAME: kernel_decode = "moe:{{.*}},max_tokens=16,isa=amx"
// SPR-SAME: kernel_prefill = "moe:n_embd=256,n_ff=128,n_expert=8,top_k=2,gate=Q4_K,up=Q4_K,down=Q8_0,max_tokens=4096,isa=amx"
// SPR-SAME: prefill_min_tokens = 17 : i64
// SPR: kt.shared_experts "blk.0.ffn_shexp"
// SPR-SAME: isa = "amx"
// SPR-SAME: kernel = "gemv"
// The location printed is the op's (line:column within the split: the routed_experts line).
// BADOPT: ktc: error: {{.*}}select-kernels.mlir{{.*}}:[[#@LINE+3]]:8: kt-select-kernels: kernels=fastest: expected 'fast' or 'reference'
// NOHW: ktc: error: {{.*}}select-kernels.mlir{{.*}}:[[#@LINE+2]]:8: kt-select-kernels: no host profile; pass hw=host.toml
func.func @moe(%x: !kt.act<256>, %r: !kt.route<2>) -> !kt.act<256> {
  %m = kt.routed_experts "blk.0.ffn_moe"(%x, %r) {n_expert = 8 : i64, top_k = 2 : i64, n_ff = 128 : i64, layer = 0 : i64, weights = [#kt.tensor<"blk.0.ffn_gate_exps.weight", "Q4_K", [256, 128, 8]>, #kt.tensor<"blk.0.ffn_up_exps.weight", "Q4_K", [256, 128, 8]>, #kt.tensor<"blk.0.ffn_down_exps.weight", "Q8_0", [128, 256, 8]>]} : (!kt.act<256>, !kt.route<2>) -> !kt.act<256>
  %s = kt.shared_experts "blk.0.ffn_shexp"(%m) {n_ff = 256 : i64, layer = 0 : i64, weights = [#kt.tensor<"blk.0.ffn_gate_shexp.weight", "Q8_0", [256, 256]>, #kt.tensor<"blk.0.ffn_up_shexp.weight", "Q8_0", [256, 256]>, #kt.tensor<"blk.0.ffn_down_shexp.weight", "Q8_0", [256, 256]>]} : (!kt.act<256>) -> !kt.act<256>
  return %s : !kt.act<256>
}

// -----

// Q6_K down has 16-element scales, no exact int8 repack: on AMX the prefill GEMM still takes
// gate and up (down runs the decode GEMV inside it); so does the AVX2 host's int16 GEMM, from
// 40 tokens per expert (8 experts, top 2: 160 tokens).
// CHECK-LABEL: func.func @q6k
// CHECK: kernel_decode = "moe:{{.*}},down=Q6_K,max_tokens=16,isa=avx2"
// CHECK-SAME: kernel_prefill = "moe:{{.*}},down=Q6_K,max_tokens=2048,isa=avx2"
// CHECK-SAME: prefill_min_tokens = 160
// SPR-LABEL: func.func @q6k
// SPR: kernel_prefill = "moe:{{.*}},down=Q6_K,max_tokens=4096,isa=amx"
// REF-LABEL: func.func @q6k
// REF: kernel = "reference"
func.func @q6k(%x: !kt.act<256>, %r: !kt.route<2>) -> !kt.act<256> {
  %m = kt.routed_experts "blk.1.ffn_moe"(%x, %r) {n_expert = 8 : i64, top_k = 2 : i64, n_ff = 256 : i64, layer = 1 : i64, weights = [#kt.tensor<"blk.1.ffn_gate_exps.weight", "Q4_K", [256, 256, 8]>, #kt.tensor<"blk.1.ffn_up_exps.weight", "Q4_K", [256, 256, 8]>, #kt.tensor<"blk.1.ffn_down_exps.weight", "Q6_K", [256, 256, 8]>]} : (!kt.act<256>, !kt.route<2>) -> !kt.act<256>
  return %m : !kt.act<256>
}

// -----

// The context recorded in the module bounds the prefill descriptor's tokens.
// SPR-LABEL: func.func @context
// SPR: kernel_prefill = "moe:{{.*}},max_tokens=512,isa=amx"
module attributes {kt.context = 512 : i64} {
func.func @context(%x: !kt.act<256>, %r: !kt.route<2>) -> !kt.act<256> {
  %m = kt.routed_experts "blk.2.ffn_moe"(%x, %r) {n_expert = 8 : i64, top_k = 2 : i64, n_ff = 128 : i64, layer = 2 : i64, weights = [#kt.tensor<"blk.2.ffn_gate_exps.weight", "Q8_0", [256, 128, 8]>, #kt.tensor<"blk.2.ffn_up_exps.weight", "Q8_0", [256, 128, 8]>, #kt.tensor<"blk.2.ffn_down_exps.weight", "Q8_0", [128, 256, 8]>]} : (!kt.act<256>, !kt.route<2>) -> !kt.act<256>
  return %m : !kt.act<256>
}
}
