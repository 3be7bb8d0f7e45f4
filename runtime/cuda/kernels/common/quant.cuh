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
#define KTX_Q5_0 6
#define KTX_Q8_0 8
#define KTX_Q4_K 12
#define KTX_Q5_K 13
#define KTX_Q6_K 14
#define KTX_BF16 30

__device__ __forceinline__ float ktx_half(ktx_u16 h) {
  float f;
#ifdef KTX_CUDA_EMU  // dev/cuda_emu: the host's conversion (library_emu.cpp, decode_kernels_test.cpp)
  f = emu_h2f(h);
#else
  asm("{ cvt.f32.f16 %0, %1; }" : "=f"(f) : "h"(h));
#endif
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
template <> struct BlockInfo<KTX_Q5_0> { static constexpr int elems = 32, bytes = 22; };
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

// Elements [32·chunk + 8·part, +8) of a block (part 0..3): four lanes decode one 32-element
// chunk, so a warp covers 8 chunks (one K-quant super-block) per step with coalesced reads.
template <int TYPE>
__device__ __forceinline__ void decode8(const ktx_u8* b, int chunk, int part, float* out);

template <>
__device__ __forceinline__ void decode8<KTX_F32>(const ktx_u8* b, int, int part, float* out) {
  const float* f = reinterpret_cast<const float*>(b) + 8 * part;
  for (int i = 0; i < 8; ++i) out[i] = f[i];
}
template <>
__device__ __forceinline__ void decode8<KTX_F16>(const ktx_u8* b, int, int part, float* out) {
  for (int i = 0; i < 8; ++i) out[i] = ktx_half(ktx_load_u16(b + 2 * (8 * part + i)));
}
template <>
__device__ __forceinline__ void decode8<KTX_BF16>(const ktx_u8* b, int, int part, float* out) {
  for (int i = 0; i < 8; ++i) out[i] = ktx_bf16(ktx_load_u16(b + 2 * (8 * part + i)));
}
// Q4_0: d, qs[16]; element e < 16: low nibble of qs[e], e >= 16: high nibble of qs[e - 16].
template <>
__device__ __forceinline__ void decode8<KTX_Q4_0>(const ktx_u8* b, int, int part, float* out) {
  const float d = ktx_half(ktx_load_u16(b));
  const ktx_u8* q = b + 2 + 8 * (part % 2);
  const int shift = (part / 2) * 4;
  for (int i = 0; i < 8; ++i) out[i] = static_cast<float>(((q[i] >> shift) & 0x0F) - 8) * d;
}
// Q5_0: d, qh (32 bits, little-endian), qs[16]; element e: nibble of qs[e % 16] (low for
// e < 16) with bit e of qh as its fifth bit, minus 16.
template <>
__device__ __forceinline__ void decode8<KTX_Q5_0>(const ktx_u8* b, int, int part, float* out) {
  const float d = ktx_half(ktx_load_u16(b));
  const unsigned qh = b[2] | (b[3] << 8) | (b[4] << 16) | (static_cast<unsigned>(b[5]) << 24);
  const ktx_u8* q = b + 6 + 8 * (part % 2);
  const int shift = (part / 2) * 4;
  for (int i = 0; i < 8; ++i) {
    const int v = ((q[i] >> shift) & 0x0F) | (((qh >> (8 * part + i)) & 1u) << 4);
    out[i] = static_cast<float>(v - 16) * d;
  }
}
template <>
__device__ __forceinline__ void decode8<KTX_Q8_0>(const ktx_u8* b, int, int part, float* out) {
  const float d = ktx_half(ktx_load_u16(b));
  for (int i = 0; i < 8; ++i) out[i] = static_cast<float>(static_cast<ktx_i8>(b[2 + 8 * part + i])) * d;
}
// Q4_K: d, dmin (f16), scales[12], qs[128]; chunk j = sub-block j (nibble j % 2 of qs[32 (j/2) ..]).
template <>
__device__ __forceinline__ void decode8<KTX_Q4_K>(const ktx_u8* b, int j, int part, float* out) {
  const float d = ktx_half(ktx_load_u16(b)), dmin = ktx_half(ktx_load_u16(b + 2));
  int sc, mn;
  ktx_scale_min_k4(b + 4, j, &sc, &mn);
  const float a = d * static_cast<float>(sc), m = dmin * static_cast<float>(mn);
  const ktx_u8* q = b + 16 + 32 * (j / 2) + 8 * part;
  const int shift = (j % 2) * 4;
  for (int i = 0; i < 8; ++i) out[i] = a * static_cast<float>((q[i] >> shift) & 0x0F) - m;
}
// Q5_K: d, dmin, scales[12], qh[32], qs[128]; bit j of qh[l] is the fifth bit.
template <>
__device__ __forceinline__ void decode8<KTX_Q5_K>(const ktx_u8* b, int j, int part, float* out) {
  const float d = ktx_half(ktx_load_u16(b)), dmin = ktx_half(ktx_load_u16(b + 2));
  int sc, mn;
  ktx_scale_min_k4(b + 4, j, &sc, &mn);
  const float a = d * static_cast<float>(sc), m = dmin * static_cast<float>(mn);
  const ktx_u8* qh = b + 16 + 8 * part;
  const ktx_u8* q = b + 48 + 32 * (j / 2) + 8 * part;
  const int shift = (j % 2) * 4;
  for (int i = 0; i < 8; ++i) {
    const int v = ((q[i] >> shift) & 0x0F) + (((qh[i] >> j) & 1) ? 16 : 0);
    out[i] = a * static_cast<float>(v) - m;
  }
}
// Q6_K: ql[128], qh[64], scales[16] (int8), d. Chunk j = 4h + g: half h, group g of 32, whose
// element l takes a nibble of ql[64h + l + 32 (g % 2)] (low for g < 2) and bits 2g of qh[32h + l].
template <>
__device__ __forceinline__ void decode8<KTX_Q6_K>(const ktx_u8* b, int j, int part, float* out) {
  const float d = ktx_half(ktx_load_u16(b + 208));
  const int h = j / 4, g = j % 4, l0 = 8 * part;
  const ktx_u8* ql = b + 64 * h + 32 * (g % 2) + l0;
  const ktx_u8* qh = b + 128 + 32 * h + l0;
  const float s = d * static_cast<float>(reinterpret_cast<const ktx_i8*>(b + 192)[8 * h + l0 / 16 + 2 * g]);
  for (int i = 0; i < 8; ++i) {
    const int lo = g < 2 ? (ql[i] & 0x0F) : (ql[i] >> 4);
    out[i] = s * static_cast<float>((lo | (((qh[i] >> (2 * g)) & 3) << 4)) - 32);
  }
}
