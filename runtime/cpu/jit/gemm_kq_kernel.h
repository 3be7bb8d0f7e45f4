// The K-quant prefill GEMM micro-kernel: Q4_K / Q5_K expert weights read in place from the
// GGUF (no load-time repack), one epilogue per 256-element super-block.
//
// A weight of row n in super-block s is w = d·(sc_j·q) − dmin·m_j (j: its 32-element
// sub-block, sc_j and m_j 6-bit, q 4 or 5 bits). The integer w' = sc_j·q (at most 63·31 = 1953)
// does not fit one int8, so the kernel expands each super-block of a 16-row panel, as it
// reaches it, into two byte planes w' = 128·wh + wl (wl in [0, 127], wh in [0, 15]) in an
// L1 scratch. Activations are int16-grade (act_quant.h q16_k: per-256 scale ad, v = 255·hi +
// lo), so one super-block's integer dot is four AMX products sharing tiles,
//   HH = wh·hi, HL = wh·lo, LH = wl·hi, LL = wl·lo        (int32, exact, no overflow)
//   S  = 128·(255·HH + HL) + (255·LH + LL)  = Σ w'·v        (formed in float, see below)
// and the epilogue per super-block adds, for token t and weight row n,
//   acc[n][t] += ad[t] · ( d[n]·S[n][t] − dmin[n] · Σ_j m_j[n]·bsum_j[t] )
// with bsum_j the int32 sum of v over sub-block j (exact in float, |.| < 2^20). That is
// Σ_k w_k·(ad·v_k) exactly up to float rounding: activation rounding is the only approximation.
// The weights are the A operand (rows = weight rows, K contiguous, as in the GGUF, so expansion
// needs no transpose) and the activations the B operand, so C tiles are [weight row][token].
//
// Float order (the twin repeats it with std::fma for identical bits):
//   t0 = fma(float(HH), 255, float(HL)); t1 = fma(float(LH), 255, float(LL));
//   S = fma(t0, 128, t1); M = bsum_0·m_0; M = fma(bsum_j, m_j, M) for j = 1..7; M = M·dmin;
//   r = fma(S, d, −M); acc = fma(r, ad, acc).
//
// Layouts (every offset a multiple of 64):
//   Activations, per token group g (16 tokens) and super-block s: kKqActBytes bytes,
//     [plane: hi, lo][chunk c 0..3][row r 0..15][token t 0..15][4]   (AMX B tiles, VNNI)
//   holding the plane value of element 64c + kq_perm(4r + i) at [c][r][t][i]. kq_perm is the
//   order in which the expansion's byte packing leaves a 64-element chunk (two sub-blocks), so
//   the weights need no shuffle. Plus kKqActFloats floats per (g, s): ad[16], then
//   bsum_j[16] for j = 0..7 (float, per token). Padding tokens: all zero.
//   Weights: 16 GGUF rows at `w`, `w_stride` bytes apart (the driver copies a tail panel into
//   zero-filled rows), super-block s of each row at s·block bytes.
//   Output: per group g, 16 weight rows x 16 tokens of float at out + g·out_group_stride
//   (row n at out + 16n), overwritten.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/hw/hw_profile.h"
#include "common/quant/quant.h"
#include "common/util/status.h"
#include "runtime/cpu/act_quant.h"

namespace ktx::cpu {

inline constexpr int64_t kKqTile = 16;                  // weight rows per panel, tokens per group
inline constexpr int64_t kKqSuper = 256;                // elements per super-block
inline constexpr int64_t kKqActBytes = 2 * 4 * 16 * 64;  // one (group, super-block): 8 KiB
inline constexpr int64_t kKqActFloats = 9 * 16;          // ad and bsum_0..7, 16 tokens each

// Element (0..63) of a 64-element chunk that byte b of an expanded weight row holds: vpackuswb
// interleaves the two sub-blocks' words per 128-bit lane (8 of the first, then 8 of the second).
constexpr int kq_perm(int b) {
  return (b % 16) < 8 ? 8 * (b / 16) + b % 16 : 32 + 8 * (b / 16) + (b % 16 - 8);
}

// Whether prefill multiplies this weight type with the K-quant kernel (in place).
bool gemm_kq_supported(GGMLType type);

// Packs one group of 16 tokens into the activation layout above for n_super super-blocks:
// tokens[t] is token t's q16_k row (n_super blocks), or null for a padding token.
void kq_pack_acts(const ActBlockQ16_K* const* tokens, int64_t n_super, int8_t* tiles,
                  int64_t tiles_stride, float* floats, int64_t floats_stride);

// Arguments of one call: one 16-row panel, all super-blocks, n_groups token groups. Generated
// code reads them by offsetof (field order is ABI).
struct GemmKqArgs {
  const uint8_t* w = nullptr;     // row 0 of the panel, super-block 0
  int64_t w_stride = 0;           // bytes between rows
  const int8_t* act = nullptr;    // group 0, super-block 0 (kKqActBytes per super-block)
  int64_t act_group_stride = 0;   // bytes from one group's tiles to the next's
  const float* act_f = nullptr;   // group 0, super-block 0 (kKqActFloats per super-block)
  int64_t act_f_group_stride = 0; // bytes
  float* out = nullptr;           // group 0
  int64_t out_group_stride = 0;   // floats
  int64_t n_super = 0;            // >= 1
  int64_t n_groups = 0;           // >= 1
};

// How a kernel reads its activation tiles (both kKqActBytes per group and super-block, the
// same kKqActFloats floats):
//   amx_planes: the layout above (two int8 planes as AMX B tiles; kq_pack_acts);
//   i16_pairs:  v = 255·hi + lo as int16, [element pair p 0..127][token t 0..15][2]: the
//               16 tokens' values of elements 2p, 2p+1 in one 64-byte row (kq_pack_acts_i16).
//   i8_quads:   q8_k32 activations (int8, one scale per 32 elements), all inside the tiles:
//               bytes [0, 4096) int8 [element quad p 0..63][token t 0..15][4] (the 16 tokens'
//               elements 4p..4p+3 in one 64-byte row), then float ad[j][t] (the scale of
//               sub-block j, 8 x 16) and float mb[j][t] = ad[j][t]·Σq over sub-block j
//               (8 x 16); the floats region is zero (kq_pack_acts_i8).
enum class KqActLayout : uint8_t { amx_planes, i16_pairs, i8_quads };
inline constexpr int64_t kKqI8Scales = 4096;       // byte offset of ad in an i8_quads tile
inline constexpr int64_t kKqI8Mins = 4096 + 512;   // byte offset of mb

class GemmKqKernel {
 public:
  virtual ~GemmKqKernel() = default;
  virtual std::string name() const = 0;
  virtual GGMLType type() const = 0;
  virtual KqActLayout act_layout() const { return KqActLayout::amx_planes; }
  virtual void run(const GemmKqArgs& args) const = 0;
};

// Plain C++ twin (every CPU). Errors: a type without this kernel.
Expected<std::unique_ptr<GemmKqKernel>> create_gemm_kq_ref(GGMLType type);
// Generated AMX kernel. Errors: the type, the CPU or OS lacks AMX (names it), generation.
Expected<std::unique_ptr<GemmKqKernel>> create_gemm_kq_amx(GGMLType type, const CpuIsa& cpu);

// The int16 form for hosts without AMX (gemm_kq_i16.cpp): weights expanded per super-block to
// int16 w' = sc·q (row-major, no transpose), activations in the i16_pairs layout, products by
// vpdpwssd (one int16 product per useful multiply-add, where the int8 planes take four).
// The int32 sums are exact over windows of W elements, W = 64 for Q4_K (|w'| <= 945) and 32
// for Q5_K (|w'| <= 1953): W·max|w'|·32512 < 2^31. Float order, per weight row n, token t and
// super-block (the twin repeats it with std::fma):
//   S = float(I_0); S = S + float(I_w) for the next windows; M as in the AMX kernel;
//   r = fma(S, d, −M); acc = fma(r, ad, acc).
void kq_pack_acts_i16(const ActBlockQ16_K* const* tokens, int64_t n_super, int8_t* tiles,
                      int64_t tiles_stride, float* floats, int64_t floats_stride);
// Its C++ twin (every CPU); errors: a type without this kernel.
Expected<std::unique_ptr<GemmKqKernel>> create_gemm_kq_i16_ref(GGMLType type);
// The AVX-512 VNNI body (gemm_kq_i16_avx512.cpp). Errors: the type, a CPU without avx512f,
// avx512bw and avx512_vnni (names what is missing).
Expected<std::unique_ptr<GemmKqKernel>> create_gemm_kq_avx512(GGMLType type, const CpuIsa& cpu);
// The int8-activation form for AVX-512 VNNI hosts (gemm_kq_i8.cpp): activations rounded to
// int8 per 32 elements (q8_k32) in the i8_quads layout, weights expanded per super-block to
// their unsigned levels q (Q4_K 0..15, Q5_K 0..31, bytes, row-major) and multiplied by
// vpdpbusd (u8 weights x s8 activations, four products per lane: twice vpdpwssd's rate). Per
// 32-element sub-block j the int32 dot I_j = Σ q·a is exact (|I_j| <= 32·31·127); float
// order, per weight row n, token t, super-block and j = 0..7 in turn (the twin repeats it
// with std::fma):
//   p = ad_j[t]·dsc_j[n]; acc = fma(float(I_j), p, acc); acc = fma(−mb_j[t], dm_j[n], acc)
// with dsc_j = d·float(sc_j), dm_j = dmin·float(m_j) (float products), acc starting at 0.
void kq_pack_acts_i8(const ActBlockQ8_K32* const* tokens, int64_t n_super, int8_t* tiles,
                     int64_t tiles_stride, float* floats, int64_t floats_stride);
// Its C++ twin (every CPU); errors: a type without this kernel.
Expected<std::unique_ptr<GemmKqKernel>> create_gemm_kq_i8_ref(GGMLType type);
// The AVX-512 VNNI body (gemm_kq_i8_avx512.cpp). Errors: the type, a CPU without avx512f,
// avx512bw and avx512_vnni (names what is missing).
Expected<std::unique_ptr<GemmKqKernel>> create_gemm_kq_avx512_i8(GGMLType type,
                                                                const CpuIsa& cpu);
// The AVX2 body (gemm_kq_i16_avx2.cpp: vpmaddwd + vpaddd on 8 tokens per vector, the same
// sums). Errors: the type, a CPU without avx2 and fma (names what is missing).
Expected<std::unique_ptr<GemmKqKernel>> create_gemm_kq_avx2(GGMLType type, const CpuIsa& cpu);

}  // namespace ktx::cpu
