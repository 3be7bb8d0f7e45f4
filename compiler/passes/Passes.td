// Passes of ktc, each one file under compiler/passes/ and runnable alone from `ktc opt`.
#ifndef KT_PASSES_TD
#define KT_PASSES_TD

include "mlir/Pass/PassBase.td"

def KtPlace : Pass<"kt-place", "::mlir::ModuleOp"> {
  let summary = "Place every kt op on a device of the host profile";
  let description = [{
    Reads the host profile (`hw=host.toml`) and records `device` on every kt op. This walking
    skeleton places everything on the CPU; an op whose weights have a ggml type no CPU kernel
    supports is an error at that op, with a note naming the host's CPU features.
  }];
  let options = [
    Option<"hwPath", "hw", "std::string", /*default=*/"\"\"",
           "host profile (TOML, as written by `ktx-run probe`)">,
  ];
}

def KtVerifyPlaced : Pass<"kt-verify-placed", "::mlir::ModuleOp"> {
  let summary = "Check that every kt op has been placed on a known device";
  let description = [{
    Fails at the first op without a `device` attribute or with a device other than "cpu" or
    "gpu". Run before plan emission so the plan never holds an unplaced op.
  }];
}

#endif  // KT_PASSES_TD
