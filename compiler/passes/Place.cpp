// --kt-place: record on every kt op the device that runs it. The walking skeleton runs
// everything exactly on the CPU, so the decision is "cpu" for every op whose weights a CPU
// kernel can read; any other weight type is an error at the op, with a note naming what the
// host offers (so a user sees both sides of the mismatch):
//
//   %a = kt.attention "blk.0.attn"(%n) {...}            // before
//   %a = kt.attention "blk.0.attn"(%n) {device = "cpu", ...}   // after
//
//   error: 'kt.routed_experts' op blk.17.ffn_down_exps.weight: IQ4_XS (23) has no CPU kernel
//   note: host.toml: CPU 'Xeon ...' with avx2 fma ...; CPU kernels read F32 F16 BF16 ...
#include <string>

#include "common/hw/hw_profile.h"
#include "common/quant/quant.h"
#include "compiler/ir/KtDialect.h"
#include "compiler/passes/GgmlTypes.h"
#include "compiler/passes/Passes.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

namespace ktx::kt {

#define GEN_PASS_DEF_KTPLACE
#include "compiler/passes/Passes.h.inc"

namespace {

std::string host_summary(const std::string& path, const HwProfile& hw) {
  std::string isa;
  for (const std::string& n : hw.cpu.isa.names()) isa += (isa.empty() ? "" : " ") + n;
  return path + ": CPU '" + hw.cpu.model_name + "' with " + (isa.empty() ? "no SIMD" : isa) +
         "; CPU kernels read " + supported_weight_types();
}

// Fails (with the error emitted at the op) on the first weight no CPU kernel can read.
mlir::LogicalResult check_cpu_weights(mlir::Operation* op, const std::string& host_note) {
  for (TensorAttr w : view_kt_op(op).weights) {
    std::optional<uint32_t> id = ggml_type_id(w.getGgmlType());
    if (id && ggml_type_supported(*id)) continue;
    std::string type = id ? ggml_type_name(*id) + " (" + std::to_string(*id) + ")"
                          : "'" + w.getGgmlType().str() + "' (unknown type name)";
    auto diag = op->emitError() << w.getName() << ": " << type << " has no CPU kernel";
    diag.attachNote() << host_note;
    return mlir::failure();
  }
  return mlir::success();
}

struct PlacePass : impl::KtPlaceBase<PlacePass> {
  using KtPlaceBase::KtPlaceBase;

  void runOnOperation() override {
    mlir::ModuleOp module = getOperation();
    // 1. Read the host profile; without one there is nothing to place onto.
    // Profile errors concern the option, not a place in the IR: no location.
    auto unknown = mlir::UnknownLoc::get(&getContext());
    if (hwPath.empty()) {
      mlir::emitError(unknown, "kt-place: no host profile; pass hw=host.toml (ktc opt: --hw=FILE)");
      return signalPassFailure();
    }
    Expected<HwProfile> hw = HwProfile::load(hwPath);
    if (!hw) {
      mlir::emitError(unknown, "kt-place: ") << hw.status().message();
      return signalPassFailure();
    }
    const std::string note = host_summary(hwPath, *hw);

    // 2. Every op goes to the CPU if its weights have a CPU kernel; report each one that
    //    does not (all of them, so one run lists every unsupported tensor).
    bool ok = true;
    mlir::Builder b(&getContext());
    module.walk([&](mlir::Operation* op) {
      if (!is_kt_op(op)) return;
      if (mlir::failed(check_cpu_weights(op, note))) {
        ok = false;
        return;
      }
      op->setAttr("device", b.getStringAttr("cpu"));
    });
    if (!ok) signalPassFailure();
  }
};

}  // namespace
}  // namespace ktx::kt
