// GPU placement of --kt-place (compiler/passes/Place.cpp) with a GPU in the profile
// (Inputs/spr-4090.toml: 24 GiB, 1 GiB reserve, context 4096): attention with its KV cache,
// norms, adds, routers, shared experts, dense FFNs and the lm_head go to the GPU; routed experts
// and the embedding stay on the CPU. Ops of both phase functions share a name and a decision.
// RUN: ktc opt %s --kt-place --hw=%inputs/spr-4090.toml 2>&1 | FileCheck %s
// The module records the GPU's share: arena = 8 buffers x 512 tokens x 256 floats x 4 bytes.
// CHECK: kt.gpu = {arch = "sm_89", arena_bytes = 4194304 : i64, budget_bytes = 24683479040 : i64, ctx = 4096 : i64, name = "NVIDIA GeForce RTX 4090"}
// CHECK-LABEL: func.func @prefill
// CHECK: kt.embed "token_embd"{{.*}}device = "cpu"
// CHECK: kt.rms_norm "blk.0.attn_norm"{{.*}}device = "gpu"
// KV cache: 4096 positions x 2 heads x (64 + 64) x 2 bytes = 2 MiB, plus q (Q4_K, 36864 B) and
// output (Q6_K, 53760 B).
// CHECK: kt.attention "blk.0.attn"{{.*}}device = "gpu"{{.*}}gpu_bytes = 2187776 : i64, gpu_upload = "gguf"
// CHECK: kt.add "blk.0.attn_residual"{{.*}}device = "gpu"
// CHECK: kt.router "blk.0.ffn_router"{{.*}}device = "gpu"
// CHECK: kt.routed_experts "blk.0.ffn_moe"{{.*}}device = "cpu"
// CHECK: kt.shared_experts "blk.0.ffn_shexp"{{.*}}device = "gpu"
// CHECK: kt.dense_ffn "blk.0.ffn"{{.*}}device = "gpu"
// CHECK: kt.lm_head "output"{{.*}}device = "gpu"
// CHECK-LABEL: func.func @decode
// CHECK: kt.attention "blk.0.attn"{{.*}}device = "gpu"{{.*}}gpu_bytes = 2187776 : i64
// CHECK: kt.routed_experts "blk.0.ffn_moe"{{.*}}device = "cpu"

// gpu-ops limits the kinds the GPU takes; the others stay on the CPU without a remark, and an
// unknown kind is an error naming the known ones.
// RUN: ktc opt %s --kt-place="gpu-ops=rms_norm,lm_head" --hw=%inputs/spr-4090.toml 2>&1 | FileCheck %s --check-prefix=OPS
// OPS-LABEL: func.func @prefill
// OPS: kt.rms_norm "blk.0.attn_norm"{{.*}}device = "gpu"
// OPS: kt.attention "blk.0.attn"{{.*}}device = "cpu"
// OPS: kt.router "blk.0.ffn_router"{{.*}}device = "cpu"
// OPS: kt.shared_experts "blk.0.ffn_shexp"{{.*}}device = "cpu"
// OPS: kt.lm_head "output"{{.*}}device = "gpu"
// RUN: not ktc opt %s --kt-place="gpu-ops=rms_norm,experts" --hw=%inputs/spr-4090.toml 2>&1 | FileCheck %s --check-prefix=BADOPS
// BADOPS: error: kt-place: gpu-ops: 'experts' is not an op kind the GPU takes (add, attention, dense_ffn, lm_head, rms_norm, router, shared_experts)

// A budget that holds the arena and the small ops but not the attention's KV cache: attention
// stays on the CPU and one remark says so, with the sizes; the rest still goes to the GPU.
// RUN: ktc opt %s --kt-place="vram-budget=5242880" --hw=%inputs/spr-4090.toml 2>&1 | FileCheck %s --check-prefix=BUDGET
// BUDGET: remark: {{.*}}1 op(s) stay on the CPU, 2.1 MiB past the GPU budget of 5.0 MiB ({{.*}} of weights and KV cache for 4096 positions placed, 4.0 MiB of activations): blk.0.attn (2.1 MiB); raise --vram-budget or lower --ctx
// BUDGET: kt.attention "blk.0.attn"{{.*}}device = "cpu"
// BUDGET: kt.dense_ffn "blk.0.ffn"{{.*}}device = "gpu"
// A shorter context makes the attention fit (it comes first); now the lm_head is what is left.
// RUN: ktc opt %s --kt-place="vram-budget=5242880 ctx=512" --hw=%inputs/spr-4090.toml 2>&1 | FileCheck %s --check-prefix=CTX
// CTX: remark: {{.*}}1 op(s) stay on the CPU, 200.0 KiB past {{.*}}KV cache for 512 positions placed{{.*}}: output (200.0 KiB)
// CTX: kt.attention "blk.0.attn"{{.*}}device = "gpu"{{.*}}gpu_bytes = 352768 : i64
// A budget below the arena: everything on the CPU.
// RUN: ktc opt %s --kt-place="vram-budget=1000" --hw=%inputs/spr-4090.toml 2>&1 | FileCheck %s --check-prefix=TINY
// TINY: remark: {{.*}}GPU 'NVIDIA GeForce RTX 4090': a VRAM budget of 1.0 KiB leaves no room past the activation arena (4.0 MiB)
// TINY-NOT: device = "gpu"
// gpu=off, and gpu=on on a host without one.
// RUN: ktc opt %s --kt-place=gpu=off --hw=%inputs/spr-4090.toml | FileCheck %s --check-prefix=OFF
// OFF-NOT: device = "gpu"
// RUN: not ktc opt %s --kt-place=gpu=on --hw=%host 2>&1 | FileCheck %s --check-prefix=NOGPU
// NOGPU: kt-place: gpu=on but {{.*}}cpu-avx2.toml lists no {{\[\[gpu\]\]}}
// RUN: not ktc opt %s --kt-place=gpu=maybe --hw=%host 2>&1 | FileCheck %s --check-prefix=BADGPU
// BADGPU: kt-place: gpu=maybe: expected auto, on or off
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
