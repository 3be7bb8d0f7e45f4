// Internals of the int16 K-quant prefill GEMM (gemm_kq_kernel.h, create_gemm_kq_i16_ref /
// create_gemm_kq_avx512, create_gemm_kq_avx2), shared by its twin and its vector bodies.
#pragma once

#include <memory>

#include "runtime/cpu/jit/gemm_kq_kernel.h"

namespace ktx::cpu {

// Elements per exact int32 window sum: 64 for Q4_K, 32 for Q5_K.
int kq_i16_window(GGMLType type);

// One super-block of one row: w' = sc·q per element, m per sub-block, d and dmin.
struct KqI16Row {
  alignas(64) int16_t wq[256];
  float m[8];
  float d, dmin;
};
void kq_i16_expand_row(bool q5, const uint8_t* blk, KqI16Row* out);
// The part of the row every body expands alike: d, dmin and the 8 mins as float into out, the
// 8 six-bit scales into sc (the twin and the vector bodies then scale the levels by sc).
void kq_i16_expand_header(const uint8_t* blk, KqI16Row* out, uint8_t sc[8]);

namespace kq_i16_detail {
// The AVX-512 VNNI kernel (the caller has checked the type and the CPU).
std::unique_ptr<GemmKqKernel> make_avx512(GGMLType type);
// The AVX2 kernel (the caller has checked the type and the CPU).
std::unique_ptr<GemmKqKernel> make_avx2(GGMLType type);
}  // namespace kq_i16_detail

}  // namespace ktx::cpu
