// --kt-verify-placed: every kt op must carry device = "cpu" | "gpu" before a plan is emitted.
// Catches a pipeline that skipped placement, or hand-written IR with an unknown device:
//
//   %0 = kt.embed "token_embd"(%arg0) {layer = -1 : i64, weights = [...]}   // no device
//   error: 'kt.embed' op token_embd: not placed (no device attribute); run --kt-place first
#include "compiler/ir/KtDialect.h"
#include "compiler/passes/Passes.h"
#include "mlir/IR/BuiltinOps.h"

namespace ktx::kt {

#define GEN_PASS_DEF_KTVERIFYPLACED
#include "compiler/passes/Passes.h.inc"

namespace {

struct VerifyPlacedPass : impl::KtVerifyPlacedBase<VerifyPlacedPass> {
  void runOnOperation() override {
    bool ok = true;
    getOperation().walk([&](mlir::Operation* op) {
      if (!is_kt_op(op)) return;
      auto device = op->getAttrOfType<mlir::StringAttr>("device");
      if (!device) {
        op->emitError() << view_kt_op(op).name
                        << ": not placed (no device attribute); run --kt-place first";
        ok = false;
      } else if (device.getValue() != "cpu" && device.getValue() != "gpu") {
        op->emitError() << view_kt_op(op).name << ": unknown device \"" << device.getValue()
                        << "\" (expected \"cpu\" or \"gpu\")";
        ok = false;
      }
    });
    if (!ok) signalPassFailure();
  }
};

}  // namespace
}  // namespace ktx::kt
