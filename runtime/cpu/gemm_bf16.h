// The prefill GEMM of the linear ops on AMX-BF16 hosts: dst = x · Wᵀ for a batch of tokens,
// the weight read in place from its GGUF blocks and dequantized, a slab at a time, into bf16
// in L2 (never a whole-matrix copy); activations rounded to bf16 once per call. Products in
// the tile unit, sums in float.
//
// Rounding (the prefill rules of issue 12: no worse than ik_llama.cpp on the shipped files):
// every weight is the float32 value dequantize_row gives, rounded to bf16 (nearest even), and
// every activation is rounded to bf16 the same way; float32 subnormals flush to zero (the
// conversion instruction does that). The decode GEMVs keep their int16-grade activations.
//
// Layouts (names as in the code; every buffer 64-byte aligned: a tile row that straddles two
// cache lines halves the tile unit's speed):
//   acts     per group g of 16 tokens and k-step s (32 elements): a 1 KiB B tile in VNNI order,
//            [pair p 0..15][token t 0..15][2], holding x[16g + t][32s + 2p + {0, 1}] (padding
//            tokens zero); a group's tiles are consecutive in s. Packed once per call.
//   a_tiles  one row pair's slab (kBf16Slab elements of 32 weight rows) as A tiles: rows 0..15
//            step by step, then rows 16..31 (512 elements per tile). Dequantized just before its
//            pass, so it sits in L1 while the pass streams the B tiles of every token pair past
//            it (prefetched two steps ahead from L2).
//   acc      [row][token] float, the C tiles of one task (up to 128 rows x 512 tokens, L2);
//            transposed into dst when the task is done.
// Tiles: C0..C3 = rows {0,16} x tokens {0,16} of a 32x32 block, A0 A1, B0 B1 (all 16 x 64 B).
// Tasks: (up to 128 rows) x (up to 512 tokens), fewer rows while there are not two tasks per
// thread; each weight is dequantized once per task.
#pragma once

#include <cstdint>

#include "common/hw/hw_profile.h"
#include "common/quant/quant.h"
#include "runtime/cpu/thread_pool.h"

namespace ktx::cpu {

inline constexpr int64_t kBf16Step = 32;   // elements per k-step (one A/B tile row)
inline constexpr int64_t kBf16Slab = 256;  // elements of K dequantized at a time (8 k-steps)

// How finely the GEMM rounds. bf16: weights and activations each rounded to bf16 once (8-bit
// significands; one tile product). bf16x3: each split into a bf16 value and its bf16-rounded
// residual, v = hi + lo, and C += A·B + A·B_lo + A_lo·B (three tile products, ~16-bit
// significands: the accuracy of the int16-grade decode GEMVs).
enum class Bf16Precision : uint8_t { bf16, bf16x3 };
const char* bf16_precision_name(Bf16Precision p);

// Whether this CPU (and OS) runs the AMX-BF16 kernels: amx_bf16, avx512_bf16 and the tile
// permission.
bool gemm_bf16_available(const CpuIsa& cpu);
// Whether a weight of this type and row length can go through it: any type dequantize_row
// handles, k a multiple of 32 (one k-step) and of the type's block.
bool gemm_bf16_supported(GGMLType type, int64_t k);

// dst[r * ld + i] = bf16(dequantize_row(W[r])[k0 + i]) for r < rows, i < n: k0 and n whole
// blocks of the type. `vector` picks the AVX-512 bodies (Q4_K Q5_K Q6_K Q8_0 F16 BF16 F32;
// other types go through dequantize_row either way); both give the same bits.
void dequant_rows_bf16(GGMLType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                       int64_t k0, int64_t n, uint16_t* dst, int64_t ld, bool vector);
// The split form's residuals too: lo[r * ld + i] = bf16(v − bf16(v)).
void dequant_rows_bf16x2(GGMLType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                         int64_t k0, int64_t n, uint16_t* hi, uint16_t* lo, int64_t ld);

// dst[t * ld_dst + r] = Σ_k bf16(W[r][k]) · bf16(x[t * ld_x + k]) for r < n_out, t < n_tok,
// W's rows row_bytes apart from w. Requires gemm_bf16_available and gemm_bf16_supported.
// A token's results do not depend on the batch it came in or on the pool size (every output
// is one tile chain over K in a fixed order).
void gemm_bf16_run(ThreadPool& pool, GGMLType type, const uint8_t* w, size_t row_bytes,
                   int64_t k, const float* x, int64_t ld_x, int64_t n_tok, float* dst,
                   int64_t ld_dst, int64_t n_out, Bf16Precision precision);

// The plain twin: the same roundings, sums in double.
void gemm_bf16_reference(GGMLType type, const uint8_t* w, size_t row_bytes, int64_t k,
                         const float* x, int64_t ld_x, int64_t n_tok, float* dst,
                         int64_t ld_dst, int64_t n_out, Bf16Precision precision);

// bf16 rounding of one float as the kernels do it: subnormals to (signed) zero, then nearest
// even.
uint16_t round_bf16(float f);

namespace bf16_detail {
// The AMX / AVX-512 bodies (gemm_bf16_amx.cpp, compiled for those ISAs; entered only after
// gemm_bf16_available).
void dequant_block_rows_avx512(GGMLType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                               int64_t k0, int64_t n, uint16_t* dst, int64_t ld);
bool dequant_has_avx512(GGMLType type);
// A row pair's slab [k0, k0 + n) as A tiles (the layout of tile_pass_amx): rows >= `rows` of
// the 32 are zero. Types with dequant_has_avx512 only; a must be 64-byte aligned.
void dequant_a_tiles_avx512(GGMLType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                            int64_t k0, int64_t n, uint16_t* a, int64_t lo_off);
// x rows [n_tok][k] -> acts (layout above) for token groups [g0, g1); k a multiple of 32.
void pack_acts_avx512(const float* x, int64_t ld_x, int64_t n_tok, int64_t k, int64_t g0,
                      int64_t g1, uint16_t* acts, int64_t lo_off);
// One row pair's pass over a slab (tiles configured by tile_configure): for every token pair tp < n_tok_pairs,
// C(tp) = (first ? 0 : acc) + Σ_{s < steps} A(s)·B(tp, s), stored back to acc.
// a: the row pair's slab as A tiles (rows 0..15 for every step, then rows 16..31; 512
// elements per tile); acts: group 0 of the task at the slab's first k-step, groups
// group_stride elements apart; acc [row][token] (32 rows), ld_acc floats per row.
// Split form (a_lo_off != 0): the residual tiles sit a_lo_off / b_lo_off elements after their
// hi tiles and C += A·B + A·B_lo + A_lo·B.
void tile_pass_amx(const uint16_t* a, int64_t a_lo_off, int64_t steps, const uint16_t* acts,
                   int64_t b_lo_off, int64_t group_stride, int64_t n_tok_pairs, float* acc,
                   int64_t ld_acc, bool first);
// Tile configuration for tile_pass_amx (8 tiles of 16 x 64 B) on the calling thread; once per
// task (ldtilecfg costs as much as a pass), released by tile_release().
void tile_configure();
void tile_release();
// dst[t * ld_dst + r] = acc[r * ld_acc + t] for r < rows, t < toks (acc readable up to the next
// multiple of 16 in both).
void store_transposed_avx512(const float* acc, int64_t ld_acc, int64_t rows, int64_t toks,
                             float* dst, int64_t ld_dst);
}  // namespace bf16_detail

}  // namespace ktx::cpu
