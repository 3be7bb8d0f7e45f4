// Activation quantization for the CPU expert kernels: the only approximation the fast paths
// make. Each token's activations are quantized once (per layer input, and again for the
// SiLU(gate)*up buffer that feeds down) into integer blocks with one float scale, so the weight
// dot products run on integer units.
//
// Precision: int8 activations (one scale per 32 or 256 elements) were measured to move the
// tiny test models' logits by a mean KL of 2e-4..5e-3 (bench/act_error_study.cpp), over the
// 5e-4 the end-to-end bound allows; int16 passes every file with a KL near 1e-8. The integer
// kernels (decode GEMVs, prefill GEMM) therefore read int16-grade activations split into two
// int8 planes,
//     v = 255·hi + lo,   hi, lo in [-127, 127],   |v| <= 32512,   x ≈ d·v,
// so every dot product stays on the int8 instructions (vpdpbusd, vpmaddubsw): the kernel runs
// its byte dot twice, against hi and against lo, and combines them as 255·dot_hi + dot_lo.
// Both planes avoid -128, so the AVX2 sign trick (|w| · sign(w)·a) cannot overflow. Decode is
// memory-bound, so the doubled integer work costs little; see docs/kernels.md. The block
// layouts here are what the generated kernels read; the reference can apply the same rounding
// (quantize, then dequantize) to tell apart "kernel is wrong" from "activation quantization
// moved the result".
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/quant/quant.h"

namespace ktx::cpu {

enum class ActFormat : uint8_t {
  f32 = 0,   // plain floats (reference kernels: exact)
  q16_0 = 1, // 32-element blocks, int16-grade as hi/lo int8 planes (ActBlockQ16_0)
  q16_k = 2, // 256-element blocks, int16-grade as hi/lo planes, 32/16-element sums (ActBlockQ16_K)
  q8_k32 = 3, // 256-element blocks of int8 with one scale per 32 elements (ActBlockQ8_K32): the
              // int8 K-quant prefill GEMM's input (gemm_kq_kernel.h, i8_quads)
};

const char* act_format_name(ActFormat f);

// Scale d = max|x| / 32512, v = round(x / d) in [-32512, 32512], hi = round(v / 255),
// lo = v - 255·hi (both in [-127, 127]); the rounding error of an element is at most d/2.
inline constexpr int32_t kQ16Max = 32512;  // 255 · 127 + 127
inline constexpr int32_t kQ16Base = 255;   // v = kQ16Base · hi + lo

struct ActBlockQ16_0 {
  float d;
  int8_t hi[32];
  int8_t lo[32];
};
static_assert(sizeof(ActBlockQ16_0) == 68);

struct ActBlockQ16_K {
  float d;
  float pad[7];        // bsum32 at 32, hi at 128 and lo at 384: 64-byte loads never split lines
  int32_t bsum32[8];   // sum of v = 255·hi + lo over each 32-element sub-block (|sum| < 2^20)
  int32_t bsum16[16];  // the same per 16 elements (Q6_K's sub-blocks: its −32 level offset)
  int8_t hi[256];
  int8_t lo[256];
};
static_assert(sizeof(ActBlockQ16_K) == 640);

// int8 per 32 elements (the coarser prefill option, docs/kernels.md "int8 K-quant GEMM"):
// d_j = max|x| / 127 over sub-block j, q = round(x / d_j) (nearest even) in [-127, 127],
// x ≈ d_j·q; qsum_j = Σ q over the sub-block (the K-quant min term).
inline constexpr int32_t kQ8Max = 127;
struct ActBlockQ8_K32 {
  float d[8];
  int32_t qsum[8];
  int8_t q[256];
};
static_assert(sizeof(ActBlockQ8_K32) == 320);

// Elements per block of a format (1 for f32).
int64_t act_block_elems(ActFormat f);
// Bytes of one quantized row of n elements (n a multiple of act_block_elems).
size_t act_row_bytes(ActFormat f, int64_t n);

// The activation format a kernel for weights of this type reads at the given tier: q16_0 for
// 32-element integer blocks, q16_k for 256-element K-quants, f32 for the rest (float paths).
ActFormat act_format_for(GGMLType weight_type, bool fast_kernel);

void quantize_act_row(ActFormat f, const float* x, void* dst, int64_t n);
// The plain C++ twin of quantize_act_row (which takes an AVX2 body where the CPU has one):
// the same bytes on every input; for tests.
void quantize_act_row_ref(ActFormat f, const float* x, void* dst, int64_t n);
void dequantize_act_row(ActFormat f, const void* src, float* dst, int64_t n);

// x <- dequantize(quantize(x)): the rounding a kernel reading format f applies to its input.
void round_act_row(ActFormat f, float* x, int64_t n);

}  // namespace ktx::cpu
