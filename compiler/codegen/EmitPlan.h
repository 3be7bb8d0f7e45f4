// Plan emission: placed kt IR -> Plan (common/plan). Everything the plan needs is read back
// from the IR (model identity from kt.gguf, ModelConfig from kt.config), so a plan can be
// emitted from text IR as well as straight after import.
#pragma once

#include <string>

#include "common/hw/hw_profile.h"
#include "common/plan/plan.h"
#include "common/util/status.h"
#include "mlir/IR/BuiltinOps.h"

namespace ktx::kt {

// The function whose ops become Plan::program. Prefill runs the same ops over a batch of
// tokens, so one op list describes both; decode is the step the runtime repeats.
inline constexpr const char* kPlanProgram = "decode";

// Build the plan of a placed module (every kt op has a device). `hw` gives HwAssumption.
// Errors name the attribute or op at fault.
Expected<Plan> emit_plan(mlir::ModuleOp module, const HwProfile& hw, const std::string& producer);

}  // namespace ktx::kt
