// Small facts about GGUF values and ggml tensor types that the reader and writer share: value
// type names and sizes, and the block layout of every ggml type id a file may carry (including
// the ones KTX cannot compute with, so that such files can still be opened and listed).
#include <fmt/format.h>

#include "common/gguf/gguf_internal.h"

namespace ktx {

const char* gguf_value_type_name(GGUFValueType t) {
  switch (t) {
    case GGUFValueType::UINT8: return "UINT8";
    case GGUFValueType::INT8: return "INT8";
    case GGUFValueType::UINT16: return "UINT16";
    case GGUFValueType::INT16: return "INT16";
    case GGUFValueType::UINT32: return "UINT32";
    case GGUFValueType::INT32: return "INT32";
    case GGUFValueType::FLOAT32: return "FLOAT32";
    case GGUFValueType::BOOL: return "BOOL";
    case GGUFValueType::STRING: return "STRING";
    case GGUFValueType::ARRAY: return "ARRAY";
    case GGUFValueType::UINT64: return "UINT64";
    case GGUFValueType::INT64: return "INT64";
    case GGUFValueType::FLOAT64: return "FLOAT64";
  }
  return "INVALID";
}

uint64_t gguf_scalar_size(GGUFValueType t) {
  switch (t) {
    case GGUFValueType::UINT8: case GGUFValueType::INT8: case GGUFValueType::BOOL: return 1;
    case GGUFValueType::UINT16: case GGUFValueType::INT16: return 2;
    case GGUFValueType::UINT32: case GGUFValueType::INT32: case GGUFValueType::FLOAT32: return 4;
    case GGUFValueType::UINT64: case GGUFValueType::INT64: case GGUFValueType::FLOAT64: return 8;
    case GGUFValueType::STRING: case GGUFValueType::ARRAY: return 0;
  }
  return 0;
}

bool GGUFValue::is_integer() const {
  switch (type) {
    case GGUFValueType::UINT8: case GGUFValueType::INT8: case GGUFValueType::UINT16:
    case GGUFValueType::INT16: case GGUFValueType::UINT32: case GGUFValueType::INT32:
    case GGUFValueType::UINT64: case GGUFValueType::INT64:
      return true;
    default:
      return false;
  }
}

bool GGUFValue::is_float() const {
  return type == GGUFValueType::FLOAT32 || type == GGUFValueType::FLOAT64;
}

std::string GGUFTensorInfo::shape_str() const {
  std::string s = "[";
  for (uint32_t d = 0; d < n_dims && d < 4; ++d) {
    if (d > 0) s += ", ";
    s += std::to_string(ne[d]);
  }
  return s + "]";
}

namespace {

struct TypeLayout {
  uint32_t id;
  int64_t block_elems;
  int64_t block_bytes;
};

// ggml's block layouts for the types quant.h does not describe (QK_K = 256). Ids 4, 5 (old
// Q4_2/Q4_3), 31..33 and 36..38 (removed repacked layouts) are deliberately absent: ggml itself
// no longer reads them.
constexpr TypeLayout kExtraLayouts[] = {
    {0, 1, 4},      {1, 1, 2},      {2, 32, 18},    {3, 32, 20},    {6, 32, 22},
    {7, 32, 24},    {8, 32, 34},    {9, 32, 36},    {10, 256, 84},  {11, 256, 110},
    {12, 256, 144}, {13, 256, 176}, {14, 256, 210}, {15, 256, 292}, {16, 256, 66},
    {17, 256, 74},  {18, 256, 98},  {19, 256, 50},  {20, 32, 18},   {21, 256, 110},
    {22, 256, 82},  {23, 256, 136}, {24, 1, 1},     {25, 1, 2},     {26, 1, 4},
    {27, 1, 8},     {28, 1, 8},     {29, 256, 56},  {30, 1, 2},     {34, 256, 54},
    {35, 256, 66},  {39, 32, 17},
};

}  // namespace

bool gguf_type_layout(uint32_t type, int64_t* block_elems, int64_t* block_bytes) {
  if (ggml_type_block(type, block_elems, block_bytes)) return true;
  for (const TypeLayout& l : kExtraLayouts) {
    if (l.id == type) {
      *block_elems = l.block_elems;
      *block_bytes = l.block_bytes;
      return true;
    }
  }
  return false;
}

std::string gguf_unknown_type_text(uint32_t type) {
  if (type > 96) {
    return fmt::format("ggml type id {} is unknown: ids above 96 are fork-specific (e.g. "
                       "ik_llama.cpp), re-quantize with upstream llama.cpp", type);
  }
  return fmt::format("ggml type id {} has no known block layout (removed or newer than this "
                     "reader)", type);
}

}  // namespace ktx
