// The kt dialect in C++: dialect class, types (!kt.act, !kt.tokens, !kt.route), the weight
// attribute (#kt.tensor) and the ops, all generated from the .td files in this folder.
#pragma once

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"

#include "compiler/ir/KtDialect.h.inc"

#define GET_TYPEDEF_CLASSES
#include "compiler/ir/KtTypes.h.inc"

#define GET_ATTRDEF_CLASSES
#include "compiler/ir/KtAttrs.h.inc"

#define GET_OP_CLASSES
#include "compiler/ir/KtOps.h.inc"

namespace ktx::kt {

// Module attribute names: the model identity and configuration the plan emitter reads back.
inline constexpr const char* kArchAttr = "kt.arch";      // StringAttr: general.architecture
inline constexpr const char* kGgufAttr = "kt.gguf";      // {path, size, hash, n_splits}
inline constexpr const char* kConfigAttr = "kt.config";  // ModelConfig::to_json as a dictionary
inline constexpr const char* kContextAttr = "kt.context";  // KV-cache length to provision

// Every kt op has these; a generic accessor spares passes a switch over op classes.
struct KtOpView {
  mlir::StringRef name;
  int64_t layer = -1;
  llvm::SmallVector<TensorAttr> weights;
};
bool is_kt_op(mlir::Operation* op);
KtOpView view_kt_op(mlir::Operation* op);

}  // namespace ktx::kt
