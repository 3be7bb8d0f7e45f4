// JSON <-> MLIR attribute conversion. The module carries ModelConfig::to_json() as a
// DictionaryAttr (kt.config) so the plan emitter can rebuild the exact ModelConfig from IR.
#pragma once

#include <nlohmann/json.hpp>

#include "common/util/status.h"
#include "mlir/IR/Attributes.h"
#include "mlir/IR/MLIRContext.h"

namespace ktx::kt {

// Objects -> DictionaryAttr, arrays -> ArrayAttr, strings -> StringAttr, booleans -> BoolAttr,
// integers -> i64 IntegerAttr, floats -> f64 FloatAttr, null -> UnitAttr.
mlir::Attribute json_to_attr(mlir::MLIRContext* ctx, const nlohmann::json& j);
// The inverse; errors name the attribute kind that has no JSON form.
Expected<nlohmann::json> attr_to_json(mlir::Attribute attr);

}  // namespace ktx::kt
