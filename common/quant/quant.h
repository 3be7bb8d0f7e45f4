// ggml tensor types: sizes, names, and reference (plain, exact) dequantization of every type
// KTX supports, bit for bit as ggml defines them (../shared/docs/QUANTS.md). Fast kernels are
// tested against these.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/util/status.h"

namespace ktx {

enum class GGMLType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
  IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

// Name of any type id, known or not ("Q4_K", "IQ4_XS", "type 142 (fork-specific)").
std::string ggml_type_name(uint32_t type);

// Elements per block and bytes per block for a type id whose layout we know: every type
// ggml defines (supported or not: IQ*, TQ*, MXFP4, I8..I64, F64, Q8_1, Q8_K), so tensors of
// any type can be sized and validated. Returns false for ids we know nothing about.
bool ggml_type_block(uint32_t type, int64_t* block_elems, int64_t* block_bytes);

// Whether tensors of this type can be used as weights (dequantized by dequantize_row).
// F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K.
bool ggml_type_supported(uint32_t type);
// ok, or an error naming the type: "IQ4_XS (type 23) is not supported by KTX; supported: ...";
// ids above 96 are reported as fork-specific.
Status check_type_supported(uint32_t type);

// Bytes of a row of n elements (n must be a multiple of the block size: error otherwise).
Expected<uint64_t> ggml_row_bytes(GGMLType type, int64_t n);

// Reference dequantization of n elements, bit-exact to ggml's dequantize_row_*.
// Preconditions (callers validate with check_type_supported / ggml_row_bytes first): the type
// is supported and n is a multiple of its block size; src needs no particular alignment.
// A violated precondition asserts in debug builds and yields NaNs in release builds.
void dequantize_row(GGMLType type, const void* src, float* dst, int64_t n);

// Reference quantization (round to nearest) for the types the tests and the model generator
// write: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, and the K-quants (simple, not ggml's
// importance-weighted search; only dequantize_row's exactness matters). Same preconditions as
// dequantize_row (a violation leaves dst untouched in release builds).
void quantize_row(GGMLType type, const float* src, void* dst, int64_t n);

float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);   // round to nearest even
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);   // round to nearest even

}  // namespace ktx
