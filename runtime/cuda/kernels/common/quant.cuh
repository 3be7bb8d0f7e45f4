// Device-side decoding of GGUF blocks (../shared/docs/QUANTS.md), one 32-element chunk at a
// time: decode_chunk<TYPE>(block, chunk, out) writes elements [32·chunk, 32·chunk + 32) of the
// block as float, with the same arithmetic as dequantize_row (common/quant): d·q for legacy
// types, (d·sc)·q − dmin·m for Q4_K/Q5_K, (d·sc)·q for Q6_K. Compiled by NVRTC (no standard
// headers: fixed-width types and half/bf16 conversions are spelled out here).
#pragma once

typedef unsigned char ktx_u8;
typedef signed char ktx_i8;
typedef unsigned short ktx_u16;
typedef long long ktx_i64;

// GGMLType ids (common/quant/quant.h).
#define KTX_F32 0
#define KTX_F16 1
#define KTX_Q4_0 2
#define KTX_Q8_0 8
#define KTX_Q4_K 12
#define KTX_Q5_K 13
#define KTX_Q6_K 14
#define KTX_BF16 30

__device__ __forceinline__ float ktx_half(ktx_u16 h) {
  float f;
  asm("{ cvt.f32.f16 %0, %1; }" : "=f"(f) : "h"(h));
  return f;
}
__device__ __forceinline__ float ktx_bf16(ktx_u16 h) { return __uint_as_float(static_cast<unsigned>(h) << 16); }
__device__ __forceinline__ ktx_u16 ktx_load_u16(const ktx_u8* p) {
  return static_cast<ktx_u16>(p[0] | (p[1] << 8));
}

template <int TYPE> struct BlockInfo;
template <> struct BlockInfo<KTX_F32> { static constexpr int elems = 32, bytes = 128; };
template <> struct BlockInfo<KTX_F16> { static constexpr int elems = 32, bytes = 64; };
template <> struct BlockInfo<KTX_BF16> { static constexpr int elems = 32, bytes = 64; };
template <> struct BlockInfo<KTX_Q4_0> { static constexpr int elems = 32, bytes = 18; };
template <> struct BlockInfo<KTX_Q8_0> { static constexpr int elems = 32, bytes = 34; };
template <> struct BlockInfo<KTX_Q4_K> { static constexpr int elems = 256, bytes = 144; };
template <> struct BlockInfo<KTX_Q5_K> { static constexpr int elems = 256, bytes = 176; };
template <> struct BlockInfo<KTX_Q6_K> { static constexpr int elems = 256, bytes = 210; };

// The 6-bit scale and min of sub-block j of a Q4_K/Q5_K block (scales at s).
__device__ __forceinline__ void ktx_scale_min_k4(const ktx_u8* s, int j, int* sc, int* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

template <int TYPE>
__device__ __forceinline__ void decode_chunk(const ktx_u8* b, int chunk, float* out);

template <>
__device__ __forceinline__ void decode_chunk<KTX_F32>(const ktx_u8* b, int, float* out) {
  const float* f = reinterpret_cast<const float*>(b);
  for (int i = 0; i < 32; ++i) out[i] = f[i];
}
template <>
__device__ __forceinline__ void decode_chunk<KTX_F16>(const ktx_u8* b, int, float* out) {
  for (int i = 0; i < 32; ++i) out[i] = ktx_half(ktx_load_u16(b + 2 * i));
}
template <>
__device__ __forceinline__ void decode_chunk<KTX_BF16>(const ktx_u8* b, int, float* out) {
  for (int i = 0; i < 32; ++i) out[i] = ktx_bf16(ktx_load_u16(b + 2 * i));
}
template <>
__device__ __forceinline__ void decode_chunk<KTX_Q4_0>(const ktx_u8* b, int, float* out) {
  const float d = ktx_half(ktx_load_u16(b));
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<float>((b[2 + j] & 0x0F) - 8) * d;
    out[j + 16] = static_cast<float>((b[2 + j] >> 4) - 8) * d;
  }
}
template <>
__device__ __forceinline__ void decode_chunk<KTX_Q8_0>(const ktx_u8* b, int, float* out) {
  const float d = ktx_half(ktx_load_u16(b));
  for (int j = 0; j < 32; ++j) out[j] = static_cast<float>(static_cast<ktx_i8>(b[2 + j])) * d;
}
// Q4_K: d, dmin (f16), scales[12], qs[128]; chunk j: sub-block j.
template <>
__device__ __forceinline__ void decode_chunk<KTX_Q4_K>(const ktx_u8* b, int j, float* out) {
  const float d = ktx_half(ktx_load_u16(b)), dmin = ktx_half(ktx_load_u16(b + 2));
  int sc, mn;
  ktx_scale_min_k4(b + 4, j, &sc, &mn);
  const float a = d * static_cast<float>(sc), m = dmin * static_cast<float>(mn);
  const ktx_u8* q = b + 16 + 32 * (j / 2);
  const int shift = (j % 2) * 4;
  for (int l = 0; l < 32; ++l) out[l] = a * static_cast<float>((q[l] >> shift) & 0x0F) - m;
}
// Q5_K: d, dmin, scales[12], qh[32], qs[128].
template <>
__device__ __forceinline__ void decode_chunk<KTX_Q5_K>(const ktx_u8* b, int j, float* out) {
  const float d = ktx_half(ktx_load_u16(b)), dmin = ktx_half(ktx_load_u16(b + 2));
  int sc, mn;
  ktx_scale_min_k4(b + 4, j, &sc, &mn);
  const float a = d * static_cast<float>(sc), m = dmin * static_cast<float>(mn);
  const ktx_u8* qh = b + 16;
  const ktx_u8* q = b + 48 + 32 * (j / 2);
  const int shift = (j % 2) * 4;
  for (int l = 0; l < 32; ++l) {
    const int v = ((q[l] >> shift) & 0x0F) + (((qh[l] >> j) & 1) ? 16 : 0);
    out[l] = a * static_cast<float>(v) - m;
  }
}
// Q6_K: ql[128], qh[64], scales[16] (int8), d. Chunk j = 4h + g (half h, group g of 32).
template <>
__device__ __forceinline__ void decode_chunk<KTX_Q6_K>(const ktx_u8* b, int j, float* out) {
  const float d = ktx_half(ktx_load_u16(b + 208));
  const int h = j / 4, g = j % 4;
  const ktx_u8* ql = b + 64 * h;
  const ktx_u8* qh = b + 128 + 32 * h;
  const ktx_i8* sc = reinterpret_cast<const ktx_i8*>(b + 192) + 8 * h;
  for (int l = 0; l < 32; ++l) {
    const ktx_u8 v = ql[l + 32 * (g % 2)];  // groups 0, 2: ql[l]; 1, 3: ql[l + 32]
    const int lo = g < 2 ? (v & 0x0F) : (v >> 4);
    const int q = (lo | (((qh[l] >> (2 * g)) & 3) << 4)) - 32;
    out[l] = d * static_cast<float>(sc[l / 16 + 2 * g]) * static_cast<float>(q);
  }
}
