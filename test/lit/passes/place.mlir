// Mirrors compiler/passes/Place.cpp on a host without a GPU: every kt op gets device = "cpu"; an op whose weights no
// CPU kernel reads is an error at the op, with a note naming the host.
// RUN: ktc opt %s --split-input-file --verify-diagnostics --kt-place --hw=%host | FileCheck %s
// The long form of the options works too; gpu=off keeps a GPU host's ops on the CPU
// (place-gpu.mlir has the GPU placement).
// RUN: ktc opt %s --split-input-file --verify-diagnostics --kt-place="hw=%inputs/spr-4090.toml gpu=off" | FileCheck %s

// One MoE layer with every op kind: all of them land on the CPU.
// CHECK-LABEL: func.func @decode
// CHECK: kt.embed "token_embd"{{.*}}device = "cpu"
// CHECK: kt.rms_norm "blk.0.attn_norm"{{.*}}device = "cpu"
// CHECK: kt.attention "blk.0.attn"{{.*}}device = "cpu"
// CHECK: kt.add "blk.0.attn_residual"{{.*}}device = "cpu"
// CHECK: kt.router "blk.0.ffn_router"{{.*}}device = "cpu"
// CHECK: kt.routed_experts "blk.0.ffn_moe"{{.*}}device = "cpu"
// CHECK: kt.shared_experts "blk.0.ffn_shexp"{{.*}}device = "cpu"
// CHECK: kt.dense_ffn "blk.0.ffn"{{.*}}device = "cpu"
// CHECK: kt.linear "blk.0.proj"{{.*}}device = "cpu"
// CHECK: kt.lm_head "output"{{.*}}device = "cpu"
// CHECK-NOT: device = "gpu"
func.func @decode(%tok: !kt.tokens) -> !kt.act<400> {
  %h = kt.embed "token_embd"(%tok) {layer = -1 : i64, weights = [#kt.tensor<"token_embd.weight", "Q8_0", [256, 400]>]} : (!kt.tokens) -> !kt.act<256>
  %n = kt.rms_norm "blk.0.attn_norm"(%h) {eps = 1.0e-06 : f32, layer = 0 : i64, weights = [#kt.tensor<"blk.0.attn_norm.weight", "F32", [256]>]} : (!kt.act<256>) -> !kt.act<256>
  %a = kt.attention "blk.0.attn"(%n) {kind = "gqa", n_head = 4 : i64, n_head_kv = 2 : i64, head_dim_k = 64 : i64, head_dim_v = 64 : i64, rope_style = "neox", n_rot = 64 : i64, rope_base = 1.0e+06 : f32, attn_scale = 0.125 : f32, qk_norm, layer = 0 : i64, weights = [#kt.tensor<"blk.0.attn_q.weight", "Q4_K", [256, 256]>, #kt.tensor<"blk.0.attn_output.weight", "Q6_K", [256, 256]>]} : (!kt.act<256>) -> !kt.act<256>
  %h1 = kt.add "blk.0.attn_residual"(%h, %a) {layer = 0 : i64, weights = []} : (!kt.act<256>, !kt.act<256>) -> !kt.act<256>
  %r = kt.router "blk.0.ffn_router"(%h1) {gating = "softmax", n_expert = 8 : i64, top_k = 2 : i64, n_group = 1 : i64, n_group_used = 1 : i64, scale = 1.0 : f32, layer = 0 : i64, weights = [#kt.tensor<"blk.0.ffn_gate_inp.weight", "F32", [256, 8]>]} : (!kt.act<256>) -> !kt.route<2>
  %m = kt.routed_experts "blk.0.ffn_moe"(%h1, %r) {n_expert = 8 : i64, top_k = 2 : i64, n_ff = 128 : i64, layer = 0 : i64, weights = [#kt.tensor<"blk.0.ffn_gate_exps.weight", "Q4_K", [256, 128, 8]>, #kt.tensor<"blk.0.ffn_up_exps.weight", "Q4_K", [256, 128, 8]>, #kt.tensor<"blk.0.ffn_down_exps.weight", "Q8_0", [128, 256, 8]>]} : (!kt.act<256>, !kt.route<2>) -> !kt.act<256>
  %s = kt.shared_experts "blk.0.ffn_shexp"(%h1) {n_ff = 256 : i64, gated, layer = 0 : i64, weights = [#kt.tensor<"blk.0.ffn_gate_shexp.weight", "Q8_0", [256, 256]>, #kt.tensor<"blk.0.ffn_up_shexp.weight", "Q8_0", [256, 256]>, #kt.tensor<"blk.0.ffn_down_shexp.weight", "Q8_0", [256, 256]>, #kt.tensor<"blk.0.ffn_gate_inp_shexp.weight", "F32", [256]>]} : (!kt.act<256>) -> !kt.act<256>
  %d = kt.dense_ffn "blk.0.ffn"(%s) {n_ff = 512 : i64, layer = 0 : i64, weights = [#kt.tensor<"blk.0.ffn_gate.weight", "Q5_K", [256, 512]>, #kt.tensor<"blk.0.ffn_up.weight", "Q5_K", [256, 512]>, #kt.tensor<"blk.0.ffn_down.weight", "Q6_K", [512, 256]>]} : (!kt.act<256>) -> !kt.act<256>
  %l = kt.linear "blk.0.proj"(%d) {layer = 0 : i64, weights = [#kt.tensor<"blk.0.proj.weight", "BF16", [256, 256]>]} : (!kt.act<256>) -> !kt.act<256>
  %o = kt.lm_head "output"(%l) {layer = -1 : i64, weights = [#kt.tensor<"output.weight", "F16", [256, 400]>]} : (!kt.act<256>) -> !kt.act<400>
  return %o : !kt.act<400>
}

// -----

// An op that was already placed is placed again (the pass is idempotent).
// CHECK-LABEL: func.func @replace
// CHECK: kt.rms_norm "output_norm"{{.*}}device = "cpu"
func.func @replace(%x: !kt.act<256>) -> !kt.act<256> {
  %n = kt.rms_norm "output_norm"(%x) {eps = 1.0e-06 : f32, layer = -1 : i64, device = "cpu", weights = [#kt.tensor<"output_norm.weight", "F32", [256]>]} : (!kt.act<256>) -> !kt.act<256>
  return %n : !kt.act<256>
}

// -----

// IQ4_XS has no CPU kernel: error at the op, naming the tensor and the type.
func.func @iq4(%x: !kt.act<256>, %r: !kt.route<2>) -> !kt.act<256> {
  // expected-error @+2 {{blk.3.ffn_down_exps.weight: IQ4_XS (23) has no CPU kernel}}
  // expected-note @+1 {{CPU kernels read F32 F16}}
  %m = kt.routed_experts "blk.3.ffn_moe"(%x, %r) {n_expert = 8 : i64, top_k = 2 : i64, n_ff = 128 : i64, layer = 3 : i64, weights = [#kt.tensor<"blk.3.ffn_gate_exps.weight", "Q4_K", [256, 128, 8]>, #kt.tensor<"blk.3.ffn_up_exps.weight", "Q4_K", [256, 128, 8]>, #kt.tensor<"blk.3.ffn_down_exps.weight", "IQ4_XS", [128, 256, 8]>]} : (!kt.act<256>, !kt.route<2>) -> !kt.act<256>
  return %m : !kt.act<256>
}

// -----

// A type name no ggml version has.
func.func @unknown_type(%x: !kt.act<256>) -> !kt.act<256> {
  // expected-error @+2 {{blk.0.attn_norm.weight: 'Q9_Z' (unknown type name) has no CPU kernel}}
  // expected-note @+1 {{CPU kernels read}}
  %n = kt.rms_norm "blk.0.attn_norm"(%x) {eps = 1.0e-06 : f32, layer = 0 : i64, weights = [#kt.tensor<"blk.0.attn_norm.weight", "Q9_Z", [256]>]} : (!kt.act<256>) -> !kt.act<256>
  return %n : !kt.act<256>
}
