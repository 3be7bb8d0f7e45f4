// Internals of the int8-activation K-quant prefill GEMM (gemm_kq_kernel.h: i8_quads,
// create_gemm_kq_i8_ref / create_gemm_kq_avx512_i8), shared by its twin and its AVX-512 body.
#pragma once

#include <memory>

#include "runtime/cpu/jit/gemm_kq_kernel.h"

namespace ktx::cpu {

// One super-block of one row: the unsigned levels q (element order), and per sub-block j
// dsc_j = d·sc_j and dm_j = dmin·m_j (float products).
struct KqI8Row {
  alignas(64) uint8_t q[256];
  float dsc[8];
  float dm[8];
};
// The scales part of the expansion (every body computes it alike, so the same floats).
void kq_i8_expand_header(const uint8_t* blk, KqI8Row* out);
void kq_i8_expand_row(bool q5, const uint8_t* blk, KqI8Row* out);

namespace kq_i8_detail {
// The AVX-512 VNNI kernel (the caller has checked the type and the CPU).
std::unique_ptr<GemmKqKernel> make_avx512(GGMLType type);
}  // namespace kq_i8_detail

}  // namespace ktx::cpu
