// ggml type names as they appear in #kt.tensor attributes, mapped back to ids so passes can ask
// common/quant what a type supports.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"

namespace ktx::kt {

// The id whose ggml_type_name() is `name` ("Q4_K" -> 12, "type 142 (fork-specific)" -> 142).
std::optional<uint32_t> ggml_type_id(llvm::StringRef name);
// "F32 F16 BF16 Q4_0 ...": the weight types CPU kernels read, in id order.
std::string supported_weight_types();
// Bytes of a tensor as stored: `shape` is GGUF's ne (elements per row first). 0 for an unknown
// type or rows that are not whole blocks.
uint64_t ggml_tensor_bytes(llvm::StringRef type, llvm::ArrayRef<int64_t> shape);

}  // namespace ktx::kt
