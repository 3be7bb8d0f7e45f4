// ktc's passes (declared in Passes.td). register_kt_passes() makes them known to `ktc opt`'s
// pipeline parser under their names (--kt-place, --kt-verify-placed).
#pragma once

#include <memory>
#include <string>

#include "mlir/Pass/Pass.h"

namespace ktx::kt {

#define GEN_PASS_DECL
#include "compiler/passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "compiler/passes/Passes.h.inc"

inline void register_kt_passes() { registerKtPasses(); }

}  // namespace ktx::kt
