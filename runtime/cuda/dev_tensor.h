// A GGUF tensor's bytes on the device, as stored in the file (GEMVs read the blocks in place).
// Norm weights and biases are given as F32 (the backend converts small tensors at upload).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/quant/quant.h"
#include "common/util/status.h"

namespace ktx::cuda {

struct DevTensor {
  const void* data = nullptr;  // device pointer
  GGMLType type = GGMLType::F32;
  int64_t row_len = 0;         // ne[0]
  int64_t n_rows = 0;          // product of the other dims
  int64_t row_bytes = 0;       // bytes of one row
};

// The device copy of a GGUF tensor by name ("blk.3.attn_q.weight"). Cheap and capture-safe:
// the backend uploads every tensor of its ops at load; an absent tensor is an error naming it.
using TensorLookup = std::function<Expected<DevTensor>(const std::string& name)>;

}  // namespace ktx::cuda
