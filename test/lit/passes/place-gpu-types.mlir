// A weight type the CPU reads but no GPU kernel does (Q2_K) keeps its op on the CPU, with a
// remark naming the op and the tensor; the other ops still go to the GPU.
// RUN: ktc opt %s --kt-place --hw=%inputs/spr-4090.toml 2>&1 | FileCheck %s
// CHECK: remark: {{.*}}1 op(s) stay on the CPU: no GPU kernel reads their weight type: blk.0.ffn (blk.0.ffn_down.weight: Q2_K)
// CHECK: kt.rms_norm "blk.0.ffn_norm"{{.*}}device = "gpu"
// CHECK: kt.dense_ffn "blk.0.ffn"{{.*}}device = "cpu"
func.func @decode(%x: !kt.act<256>) -> !kt.act<256> {
  %n = kt.rms_norm "blk.0.ffn_norm"(%x) {eps = 1.0e-06 : f32, layer = 0 : i64, weights = [#kt.tensor<"blk.0.ffn_norm.weight", "F32", [256]>]} : (!kt.act<256>) -> !kt.act<256>
  %d = kt.dense_ffn "blk.0.ffn"(%n) {n_ff = 512 : i64, layer = 0 : i64, weights = [#kt.tensor<"blk.0.ffn_gate.weight", "Q4_K", [256, 512]>, #kt.tensor<"blk.0.ffn_up.weight", "Q4_K", [256, 512]>, #kt.tensor<"blk.0.ffn_down.weight", "Q2_K", [512, 256]>]} : (!kt.act<256>) -> !kt.act<256>
  return %d : !kt.act<256>
}
