// Activation quantization for the CPU expert kernels: the only approximation the fast paths
// make. Each token's activations are quantized once (per layer input, and again for the
// SiLU(gate)*up buffer that feeds down) into int8 blocks with one float scale, so the weight
// dot products run on integer units. The block layouts here are what the generated kernels
// read; the reference can apply the same rounding (quantize, then dequantize) to tell apart
// "kernel is wrong" from "activation quantization moved the result".
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/quant/quant.h"

namespace ktx::cpu {

enum class ActFormat : uint8_t {
  f32 = 0,   // plain floats (reference kernels: exact)
  q8_0 = 1,  // 32-element blocks, for weights in 32-element blocks (Q8_0, Q4_0, ...)
  q8_k = 2,  // 256-element blocks with 32-element partial sums, for K-quant weights
};

const char* act_format_name(ActFormat f);

// Scale d = max|x| / 127 and q = round(x / d) in [-127, 127]: never -128, so the AVX2 sign
// trick (|w| * sign(w)·a) cannot overflow and the rounding error of an element is at most d/2.
struct ActBlockQ8_0 {
  float d;
  int8_t qs[32];
};
static_assert(sizeof(ActBlockQ8_0) == 36);

struct ActBlockQ8_K {
  float d;
  float pad[3];        // keeps bsum32 at 16 and qs at 32: aligned vector loads in the kernel
  int16_t bsum32[8];   // sum of qs over each 32-element sub-block (K-quant min terms)
  int8_t qs[256];
};
static_assert(sizeof(ActBlockQ8_K) == 288);

// Elements per block of a format (1 for f32).
int64_t act_block_elems(ActFormat f);
// Bytes of one quantized row of n elements (n a multiple of act_block_elems).
size_t act_row_bytes(ActFormat f, int64_t n);

// The activation format a kernel for weights of this type reads at the given tier: q8_0 for
// 32-element integer blocks, q8_k for 256-element K-quants, f32 for the rest (float paths).
ActFormat act_format_for(GGMLType weight_type, bool fast_kernel);

void quantize_act_row(ActFormat f, const float* x, void* dst, int64_t n);
void dequantize_act_row(ActFormat f, const void* src, float* dst, int64_t n);

// x <- dequantize(quantize(x)): the rounding a kernel reading format f applies to its input.
void round_act_row(ActFormat f, float* x, int64_t n);

}  // namespace ktx::cpu
