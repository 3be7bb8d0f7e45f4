// Internal to common/quant: the byte layout of every block KTX decodes or encodes, as plain
// structs whose field order is the storage order of ../shared/docs/QUANTS.md, and the per-type
// row functions that quant.cpp dispatches to. The static_asserts pin each struct to the block
// size GGUF files use, so a layout slip fails the build instead of corrupting weights.
//
// Row functions copy each block into a local struct with memcpy: GGUF data is aligned, but a
// caller's buffer need not be, and the reference code should never depend on that.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/quant/quant.h"

namespace ktx::quant_detail {

constexpr int kQK = 32;    // elements of a legacy block
constexpr int kQKK = 256;  // elements of a K-quant super-block

struct BlockQ4_0 { uint16_t d; uint8_t qs[16]; };
struct BlockQ4_1 { uint16_t d, m; uint8_t qs[16]; };
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };
struct BlockQ5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; };
struct BlockQ8_0 { uint16_t d; int8_t qs[32]; };
struct BlockQ2_K { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; };
struct BlockQ3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; };
struct BlockQ4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; };
struct BlockQ5_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
struct BlockQ6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; };

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);

// Block i of a row, copied out (see the note at the top on alignment).
template <typename Block>
Block load_block(const uint8_t* src, int64_t i) {
  Block b;
  std::memcpy(&b, src + i * static_cast<int64_t>(sizeof(Block)), sizeof(Block));
  return b;
}

template <typename Block>
void store_block(uint8_t* dst, int64_t i, const Block& b) {
  std::memcpy(dst + i * static_cast<int64_t>(sizeof(Block)), &b, sizeof(Block));
}

// round(v) clamped to [lo, hi], ties to even. The quantizers call this per element, and
// std::lround is a library call, so round through the float adder instead: adding 1.5*2^23
// leaves the rounded integer in the low mantissa bits (valid for |v| < 2^22; v is clamped to
// the level range first, which also keeps NaN inputs from producing out-of-range levels).
inline int clamp_round(float v, int lo, int hi) {
  const float c = std::clamp(v, static_cast<float>(lo), static_cast<float>(hi));
  const float shifted = c + 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &shifted, 4);
  return std::clamp((bits & 0x007fffff) - 0x00400000, lo, hi);
}

// Dequantize n elements (a multiple of the block size; checked by the caller).
void dequantize_row_q4_0(const uint8_t* src, float* dst, int64_t n);
void dequantize_row_q4_1(const uint8_t* src, float* dst, int64_t n);
void dequantize_row_q5_0(const uint8_t* src, float* dst, int64_t n);
void dequantize_row_q5_1(const uint8_t* src, float* dst, int64_t n);
void dequantize_row_q8_0(const uint8_t* src, float* dst, int64_t n);
void dequantize_row_q2_k(const uint8_t* src, float* dst, int64_t n);
void dequantize_row_q3_k(const uint8_t* src, float* dst, int64_t n);
void dequantize_row_q4_k(const uint8_t* src, float* dst, int64_t n);
void dequantize_row_q5_k(const uint8_t* src, float* dst, int64_t n);
void dequantize_row_q6_k(const uint8_t* src, float* dst, int64_t n);

// Quantize n elements (round to nearest; same preconditions).
void quantize_row_q4_0(const float* src, uint8_t* dst, int64_t n);
void quantize_row_q4_1(const float* src, uint8_t* dst, int64_t n);
void quantize_row_q5_0(const float* src, uint8_t* dst, int64_t n);
void quantize_row_q5_1(const float* src, uint8_t* dst, int64_t n);
void quantize_row_q8_0(const float* src, uint8_t* dst, int64_t n);
void quantize_row_q2_k(const float* src, uint8_t* dst, int64_t n);
void quantize_row_q3_k(const float* src, uint8_t* dst, int64_t n);
void quantize_row_q4_k(const float* src, uint8_t* dst, int64_t n);
void quantize_row_q5_k(const float* src, uint8_t* dst, int64_t n);
void quantize_row_q6_k(const float* src, uint8_t* dst, int64_t n);

// The f16 at p (any alignment) as float.
inline float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_fp32(h);
}
// The 6-bit scale and min of sub-block s (0..7) of a Q4_K/Q5_K block (QUANTS.md packing).
void unpack_scale_min_k4(const uint8_t* scales, int s, uint8_t* sc, uint8_t* mn);
// The 256 levels of a Q4_K (0..15) or Q5_K (0..31, fifth bit from qh) super-block at blk, in
// element order: element k belongs to sub-block k / 32.
void unpack_levels_k4(const uint8_t* blk, bool q5, uint8_t q[256]);
// The sixteen 6-bit (unsigned, bias 32) scales of a Q3_K block.
void unpack_scales_q3_k(const uint8_t* scales, uint8_t out[16]);

}  // namespace ktx::quant_detail
