// Errors of --kt-select-kernels at the op: a descriptor that cannot exist (shape not a whole
// number of blocks), expert tensors that cannot be told apart. (Option errors: select-kernels.mlir.)
// RUN: ktc opt %s --split-input-file --verify-diagnostics --kt-select-kernels --hw=%host

// A shape that is not a whole number of blocks has no kernel descriptor: error at the op.
func.func @bad_shape(%x: !kt.act<200>, %r: !kt.route<2>) -> !kt.act<200> {
  // expected-error @+1 {{blk.3.ffn_moe: moe: gate rows of 200 elements}}
  %m = kt.routed_experts "blk.3.ffn_moe"(%x, %r) {n_expert = 8 : i64, top_k = 2 : i64, n_ff = 128 : i64, layer = 3 : i64, weights = [#kt.tensor<"blk.3.ffn_gate_exps.weight", "Q4_K", [200, 128, 8]>, #kt.tensor<"blk.3.ffn_up_exps.weight", "Q4_K", [200, 128, 8]>, #kt.tensor<"blk.3.ffn_down_exps.weight", "Q8_0", [128, 200, 8]>]} : (!kt.act<200>, !kt.route<2>) -> !kt.act<200>
  return %m : !kt.act<200>
}

// -----

// Expert tensors must be recognisable as gate, up and down (by their GGUF names).
func.func @missing_down(%x: !kt.act<256>, %r: !kt.route<2>) -> !kt.act<256> {
  // expected-error @+1 {{blk.4.ffn_moe: no weight named *ffn_down_exps*}}
  %m = kt.routed_experts "blk.4.ffn_moe"(%x, %r) {n_expert = 8 : i64, top_k = 2 : i64, n_ff = 128 : i64, layer = 4 : i64, weights = [#kt.tensor<"blk.4.ffn_gate_exps.weight", "Q4_K", [256, 128, 8]>, #kt.tensor<"blk.4.ffn_up_exps.weight", "Q4_K", [256, 128, 8]>, #kt.tensor<"blk.4.ffn_w2.weight", "Q8_0", [128, 256, 8]>]} : (!kt.act<256>, !kt.route<2>) -> !kt.act<256>
  return %m : !kt.act<256>
}
