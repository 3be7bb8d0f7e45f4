// Name -> id lookup for ggml types (see GgmlTypes.h). Names come from common/quant's
// ggml_type_name, so the IR and the quant library can never disagree on spelling.
#include "compiler/passes/GgmlTypes.h"

#include "common/quant/quant.h"

namespace ktx::kt {

namespace {
// ggml's enum is far below this; fork ids seen in the wild stay under 256 too.
constexpr uint32_t kMaxTypeId = 256;
}  // namespace

std::optional<uint32_t> ggml_type_id(llvm::StringRef name) {
  for (uint32_t id = 0; id < kMaxTypeId; ++id)
    if (name == ggml_type_name(id)) return id;
  return std::nullopt;
}

std::string supported_weight_types() {
  std::string out;
  for (uint32_t id = 0; id < kMaxTypeId; ++id)
    if (ggml_type_supported(id)) out += (out.empty() ? "" : " ") + ggml_type_name(id);
  return out;
}

uint64_t ggml_tensor_bytes(llvm::StringRef type, llvm::ArrayRef<int64_t> shape) {
  std::optional<uint32_t> id = ggml_type_id(type);
  if (!id || shape.empty()) return 0;
  auto row = ggml_row_bytes(static_cast<GGMLType>(*id), shape[0]);
  if (!row) return 0;
  uint64_t rows = 1;
  for (size_t i = 1; i < shape.size(); ++i) rows *= static_cast<uint64_t>(shape[i]);
  return *row * rows;
}

}  // namespace ktx::kt
