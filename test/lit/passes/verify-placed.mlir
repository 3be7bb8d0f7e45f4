// Mirrors compiler/passes/VerifyPlaced.cpp.
// RUN: ktc opt %s --split-input-file --verify-diagnostics --kt-verify-placed | FileCheck %s
// Placement then verification passes on the same input.
// RUN: ktc opt %s --split-input-file --kt-place --hw=%host --kt-verify-placed | FileCheck %s --check-prefix=PLACED

// CHECK-LABEL: func.func @placed
// CHECK: kt.rms_norm "output_norm"{{.*}}device = "cpu"
// PLACED-LABEL: func.func @placed
func.func @placed(%x: !kt.act<256>) -> !kt.act<256> {
  %n = kt.rms_norm "output_norm"(%x) {eps = 1.0e-06 : f32, layer = -1 : i64, device = "cpu", weights = [#kt.tensor<"output_norm.weight", "F32", [256]>]} : (!kt.act<256>) -> !kt.act<256>
  return %n : !kt.act<256>
}

// -----

// PLACED-LABEL: func.func @unplaced
// PLACED: kt.add "blk.0.attn_residual"{{.*}}device = "cpu"
func.func @unplaced(%x: !kt.act<256>) -> !kt.act<256> {
  // expected-error @+1 {{blk.0.attn_residual: not placed (no device attribute); run --kt-place first}}
  %s = kt.add "blk.0.attn_residual"(%x, %x) {layer = 0 : i64, weights = []} : (!kt.act<256>, !kt.act<256>) -> !kt.act<256>
  return %s : !kt.act<256>
}
