// Verifiers of the kt dialect (compiler/ir/KtDialect.cpp): hand-written IR gets an error at
// the op that breaks an invariant.
// RUN: ktc opt %s --split-input-file --verify-diagnostics

func.func @bad_kind(%x: !kt.act<256>) -> !kt.act<256> {
  // expected-error @+1 {{kind must be "gqa" or "mla", found "mha"}}
  %a = kt.attention "blk.0.attn"(%x) {kind = "mha", n_head = 4 : i64, n_head_kv = 2 : i64, head_dim_k = 64 : i64, head_dim_v = 64 : i64, rope_style = "neox", n_rot = 64 : i64, rope_base = 1.0e+04 : f32, attn_scale = 0.125 : f32, layer = 0 : i64, weights = [#kt.tensor<"blk.0.attn_q.weight", "Q8_0", [256, 256]>]} : (!kt.act<256>) -> !kt.act<256>
  return %a : !kt.act<256>
}

// -----

func.func @mla_without_layout(%x: !kt.act<256>) -> !kt.act<256> {
  // expected-error @+1 {{kind "mla" needs mla_layout, q_lora_rank, kv_lora_rank, qk_rope_dim}}
  %a = kt.attention "blk.0.attn"(%x) {kind = "mla", n_head = 4 : i64, n_head_kv = 4 : i64, head_dim_k = 96 : i64, head_dim_v = 64 : i64, rope_style = "normal", n_rot = 32 : i64, rope_base = 1.0e+04 : f32, attn_scale = 0.1 : f32, kv_lora_rank = 128 : i64, layer = 0 : i64, weights = [#kt.tensor<"blk.0.attn_q.weight", "Q8_0", [256, 384]>]} : (!kt.act<256>) -> !kt.act<256>
  return %a : !kt.act<256>
}

// -----

func.func @router_topk(%x: !kt.act<256>) -> !kt.route<9> {
  // expected-error @+1 {{top_k 9 must be in [1, n_expert=8]}}
  %r = kt.router "blk.0.ffn_router"(%x) {gating = "softmax", n_expert = 8 : i64, top_k = 9 : i64, n_group = 1 : i64, n_group_used = 1 : i64, scale = 1.0 : f32, layer = 0 : i64, weights = [#kt.tensor<"blk.0.ffn_gate_inp.weight", "F32", [256, 8]>]} : (!kt.act<256>) -> !kt.route<9>
  return %r : !kt.route<9>
}

// -----

func.func @bad_device(%x: !kt.act<256>) -> !kt.act<256> {
  // expected-error @+1 {{device must be "cpu" or "gpu", found "tpu"}}
  %s = kt.add "blk.0.attn_residual"(%x, %x) {layer = 0 : i64, device = "tpu", weights = []} : (!kt.act<256>, !kt.act<256>) -> !kt.act<256>
  return %s : !kt.act<256>
}

// -----

func.func @width(%x: !kt.act<256>) -> !kt.act<128> {
  // expected-error @+1 {{result width 128 differs from input width 256}}
  %n = kt.rms_norm "blk.0.attn_norm"(%x) {eps = 1.0e-06 : f32, layer = 0 : i64, weights = [#kt.tensor<"blk.0.attn_norm.weight", "F32", [256]>]} : (!kt.act<256>) -> !kt.act<128>
  return %n : !kt.act<128>
}

// -----

// expected-error @+1 {{expected 1 to 4 dimensions, found 5}}
func.func private @five_dims() attributes {w = #kt.tensor<"t", "F32", [1, 2, 3, 4, 5]>}
