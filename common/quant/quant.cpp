// Type facts (names, block layouts, which types KTX decodes) and the dispatch of
// dequantize_row / quantize_row to the per-family files: quant_legacy.cpp (32-element blocks),
// quant_k.cpp and quant_k_quantize.cpp (256-element K-quants), fp16.cpp (float conversions).
// Block sizes are listed for every type whose layout is known, supported or not, so the GGUF
// reader can size and validate any tensor and report "unsupported" only when it is used.
#include <cassert>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/quant/quant.h"
#include "common/quant/quant_blocks.h"

namespace ktx {
namespace {

using namespace quant_detail;

struct TypeInfo {
  uint32_t id;
  const char* name;
  int64_t block_elems;  // 0: layout unknown to us
  int64_t block_bytes;
  bool supported;
};

// Every id ggml has assigned and not retired. Block sizes follow ggml's block structs.
constexpr TypeInfo kTypes[] = {
    {0, "F32", 1, 4, true},          {1, "F16", 1, 2, true},
    {2, "Q4_0", 32, 18, true},       {3, "Q4_1", 32, 20, true},
    {6, "Q5_0", 32, 22, true},       {7, "Q5_1", 32, 24, true},
    {8, "Q8_0", 32, 34, true},       {9, "Q8_1", 32, 36, false},
    {10, "Q2_K", 256, 84, true},     {11, "Q3_K", 256, 110, true},
    {12, "Q4_K", 256, 144, true},    {13, "Q5_K", 256, 176, true},
    {14, "Q6_K", 256, 210, true},    {15, "Q8_K", 256, 292, false},
    {16, "IQ2_XXS", 256, 66, false}, {17, "IQ2_XS", 256, 74, false},
    {18, "IQ3_XXS", 256, 98, false}, {19, "IQ1_S", 256, 50, false},
    {20, "IQ4_NL", 32, 18, false},   {21, "IQ3_S", 256, 110, false},
    {22, "IQ2_S", 256, 82, false},   {23, "IQ4_XS", 256, 136, false},
    {24, "I8", 1, 1, false},         {25, "I16", 1, 2, false},
    {26, "I32", 1, 4, false},        {27, "I64", 1, 8, false},
    {28, "F64", 1, 8, false},        {29, "IQ1_M", 256, 56, false},
    {30, "BF16", 1, 2, true},        {34, "TQ1_0", 256, 54, false},
    {35, "TQ2_0", 256, 66, false},   {39, "MXFP4", 32, 17, false},
};

// ggml's upstream ids stay small; forks (ik_llama.cpp and others) number their own types
// from far above, so an id past this is a fork's, not a corrupt file's.
constexpr uint32_t kLastUpstreamId = 96;

const TypeInfo* find_type(uint32_t id) {
  for (const TypeInfo& t : kTypes) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

constexpr const char* kSupportedList =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";

}  // namespace

std::string ggml_type_name(uint32_t type) {
  if (const TypeInfo* t = find_type(type)) return t->name;
  if (type > kLastUpstreamId) return fmt::format("type {} (fork-specific)", type);
  return fmt::format("type {} (unknown)", type);
}

bool ggml_type_block(uint32_t type, int64_t* block_elems, int64_t* block_bytes) {
  const TypeInfo* t = find_type(type);
  if (t == nullptr || t->block_elems == 0) return false;
  if (block_elems) *block_elems = t->block_elems;
  if (block_bytes) *block_bytes = t->block_bytes;
  return true;
}

bool ggml_type_supported(uint32_t type) {
  const TypeInfo* t = find_type(type);
  return t != nullptr && t->supported;
}

Status check_type_supported(uint32_t type) {
  if (ggml_type_supported(type)) return Status::ok();
  const TypeInfo* t = find_type(type);
  if (t != nullptr) {
    return Error("{} (type {}) is not supported by KTX; supported: {}", t->name, type,
                 kSupportedList);
  }
  if (type > kLastUpstreamId) {
    return Error("type {} is fork-specific (not a ggml type; written by a fork of llama.cpp) "
                 "and is not supported by KTX; supported: {}", type, kSupportedList);
  }
  return Error("type {} is unknown to KTX (not a ggml type id we know); supported: {}", type,
               kSupportedList);
}

Expected<uint64_t> ggml_row_bytes(GGMLType type, int64_t n) {
  const uint32_t id = static_cast<uint32_t>(type);
  int64_t be = 0, bb = 0;
  if (!ggml_type_block(id, &be, &bb)) {
    return Error("{}: block layout unknown, cannot size a row of {} elements",
                 ggml_type_name(id), n);
  }
  if (n < 0 || n % be != 0) {
    return Error("{}: row of {} elements is not a multiple of the block size {}",
                 ggml_type_name(id), n, be);
  }
  return static_cast<uint64_t>(n / be) * static_cast<uint64_t>(bb);
}

namespace {

// Precondition check shared by both directions. A violation is a programming error (callers
// validate tensors against ggml_row_bytes / check_type_supported first), so it asserts in
// debug builds and, in release builds, makes the output unmistakably wrong rather than silent.
bool row_args_ok(GGMLType type, int64_t n) {
  const uint32_t id = static_cast<uint32_t>(type);
  int64_t be = 0;
  const bool ok = ggml_type_supported(id) && ggml_type_block(id, &be, nullptr) && n >= 0 &&
                  n % be == 0;
  assert(ok && "dequantize_row/quantize_row: unsupported type or n not a block multiple");
  return ok;
}

}  // namespace

void dequantize_row(GGMLType type, const void* src, float* dst, int64_t n) {
  if (!row_args_ok(type, n)) {
    for (int64_t i = 0; i < n; ++i) dst[i] = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  const auto* s = static_cast<const uint8_t*>(src);
  switch (type) {
    case GGMLType::F32: std::memcpy(dst, s, static_cast<size_t>(n) * sizeof(float)); return;
    case GGMLType::F16:
    case GGMLType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        dst[i] = type == GGMLType::F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
      }
      return;
    case GGMLType::Q4_0: dequantize_row_q4_0(s, dst, n); return;
    case GGMLType::Q4_1: dequantize_row_q4_1(s, dst, n); return;
    case GGMLType::Q5_0: dequantize_row_q5_0(s, dst, n); return;
    case GGMLType::Q5_1: dequantize_row_q5_1(s, dst, n); return;
    case GGMLType::Q8_0: dequantize_row_q8_0(s, dst, n); return;
    case GGMLType::Q2_K: dequantize_row_q2_k(s, dst, n); return;
    case GGMLType::Q3_K: dequantize_row_q3_k(s, dst, n); return;
    case GGMLType::Q4_K: dequantize_row_q4_k(s, dst, n); return;
    case GGMLType::Q5_K: dequantize_row_q5_k(s, dst, n); return;
    case GGMLType::Q6_K: dequantize_row_q6_k(s, dst, n); return;
    default: return;  // unreachable: row_args_ok accepted only supported types
  }
}

void quantize_row(GGMLType type, const float* src, void* dst, int64_t n) {
  if (!row_args_ok(type, n)) return;
  auto* d = static_cast<uint8_t*>(dst);
  switch (type) {
    case GGMLType::F32: std::memcpy(d, src, static_cast<size_t>(n) * sizeof(float)); return;
    case GGMLType::F16:
    case GGMLType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = type == GGMLType::F16 ? fp32_to_fp16(src[i]) : fp32_to_bf16(src[i]);
        std::memcpy(d + 2 * i, &h, 2);
      }
      return;
    case GGMLType::Q4_0: quantize_row_q4_0(src, d, n); return;
    case GGMLType::Q4_1: quantize_row_q4_1(src, d, n); return;
    case GGMLType::Q5_0: quantize_row_q5_0(src, d, n); return;
    case GGMLType::Q5_1: quantize_row_q5_1(src, d, n); return;
    case GGMLType::Q8_0: quantize_row_q8_0(src, d, n); return;
    case GGMLType::Q2_K: quantize_row_q2_k(src, d, n); return;
    case GGMLType::Q3_K: quantize_row_q3_k(src, d, n); return;
    case GGMLType::Q4_K: quantize_row_q4_k(src, d, n); return;
    case GGMLType::Q5_K: quantize_row_q5_k(src, d, n); return;
    case GGMLType::Q6_K: quantize_row_q6_k(src, d, n); return;
    default: return;
  }
}

}  // namespace ktx
