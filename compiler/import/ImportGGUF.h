// GGUF -> kt dialect. The importer decides nothing about the model itself: ModelConfig (from
// common/model) says what the file means; this turns it into @prefill and @decode functions of
// block-level kt ops whose weights name the file's tensors.
#pragma once

#include <cstdint>
#include <string>

#include "common/gguf/gguf.h"
#include "common/model/config.h"
#include "common/util/status.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"

namespace ktx::kt {

struct ImportOptions {
  int64_t context = 0;  // KV-cache length to provision (kt.context); 0 = not recorded
};

// Build the module for an opened file whose config has passed check_tensors. The context
// must have the kt and func dialects loaded (see register_ktc_dialects).
Expected<mlir::OwningOpRef<mlir::ModuleOp>> import_model(mlir::MLIRContext& ctx,
                                                         const GGUFFile& file,
                                                         const ModelConfig& config,
                                                         const ImportOptions& options = {});

// Open, decide the config, check its tensors, import. Errors name the file.
Expected<mlir::OwningOpRef<mlir::ModuleOp>> import_gguf(mlir::MLIRContext& ctx,
                                                        const std::string& path,
                                                        const ImportOptions& options = {});

// Load the dialects ktc's IR uses (kt, func) into a context.
void register_ktc_dialects(mlir::MLIRContext& ctx);

}  // namespace ktx::kt
