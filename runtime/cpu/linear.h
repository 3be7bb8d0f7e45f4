// One linear layer y = W·x on a GGUF tensor read in place (no float32 weight copy, ever): the
// attention projections, dense FFNs, shared experts, routers and the lm_head of the CPU
// backend. The weight rows go through the generated GEMV kernels of jit/gemv.h (the same ones
// the routed experts use), so every linear op runs at the tier the plan chose; tensor types
// without a generated kernel fall back to the plain reference kernel of the dispatch list.
//
// Prefill batches on AMX-BF16 hosts: at the amx tier, calls of more than kGemmMinTokens tokens
// go through the bf16 tile GEMM of gemm_bf16.h (weights dequantized a slab at a time into L1,
// float sums), any weight type but F32 (routers: their top-k choice is too sensitive to
// rounding, and they are small). Its default precision, bf16x3 (weights and activations split
// into two bf16 parts), keeps the shipped models within their bounds; bf16 is 3x the tile work
// less and rounds both to 8-bit significands.
//
// Types with an exact Q8_0 form but no generated kernel (Q5_0: DeepSeek's attn_k_b, whose
// 128-element rows are too short for K-quants) are repacked once at create() into Q8_0 (same
// scale, q - 16 as int8: the same values bit for bit), owned by the Linear; the plan's memory
// report counts them.
//
// A call quantizes each token's input once into the kernel's activation format (int16-grade
// planes, runtime/cpu/act_quant.h: a KL near 1e-8 on the shipped models), then splits the
// output into (row chunk × token block) tasks on the thread pool. Token blocks keep a block's
// activations in L2 while the row chunk streams its weights once per block, which is what
// makes the same kernels usable for prefill batches.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/hw/hw_profile.h"
#include "common/kernels/kernel_desc.h"
#include "common/quant/quant.h"
#include "runtime/cpu/gemm_bf16.h"
#include "runtime/cpu/jit/gemv.h"
#include "runtime/cpu/thread_pool.h"

namespace ktx::cpu {

// Calls with more tokens than this use the prefill GEMM where the Linear has one.
inline constexpr int64_t kGemmMinTokens = 16;

class Linear {
 public:
  // `data` must hold n_rows rows of ggml_row_bytes(type, k) bytes and outlive the Linear.
  // Errors: a shape that is not whole blocks, a tier this CPU lacks, a kernel that fails to
  // generate; each names the descriptor.
  static Expected<std::unique_ptr<Linear>> create(const LinearDesc& desc, const uint8_t* data,
                                                  const CpuIsa& cpu);
  ~Linear();

  // dst[t * ld_dst + r] = W[row0 + r] · x[t * ld_x .. + k) for r < n_out, t < n_tok.
  // n_out < 0 means all rows from row0. Results of a token do not depend on n_tok or on the
  // pool's size (each output is one kernel dot product in a fixed order).
  void run(ThreadPool& pool, const float* x, int64_t ld_x, int64_t n_tok, float* dst,
           int64_t ld_dst, int64_t row0 = 0, int64_t n_out = -1) const;
  // Whole matrix: dst [n_tok][n_rows] = x [n_tok][k] · Wᵀ.
  void run(ThreadPool& pool, const float* x, int64_t n_tok, float* dst) const {
    run(pool, x, desc_.k, n_tok, dst, desc_.n_rows);
  }

  // The per-head form of one call (MLA's k_b / v_b): for every head h < n_heads, rows
  // [h·head_rows, h·head_rows + head_rows) applied to the input at x + h·x_head_stride, written
  // to dst + h·dst_head_stride (row r of the head at column r). One pool dispatch for all
  // heads: 128 heads × 2 products × 61 layers would otherwise cost a dispatch each per token.
  void run_heads(ThreadPool& pool, int64_t n_heads, int64_t head_rows, const float* x,
                 int64_t x_head_stride, int64_t ld_x, int64_t n_tok, float* dst,
                 int64_t dst_head_stride, int64_t ld_dst) const;

  const LinearDesc& desc() const { return desc_; }
  ActFormat act_format() const { return kernel_->act_format(); }
  // The decode kernel's name, plus "+<gemm>" when large calls use a prefill GEMM.
  std::string kernel_name() const;
  // Whether a call of n_tok tokens goes through the bf16 prefill GEMM (its rounding).
  bool uses_gemm(int64_t n_tok) const { return gemm_bf16_ && n_tok > kGemmMinTokens; }
  // The prefill GEMM's rounding (gemm_bf16.h): bf16x3 unless set otherwise.
  Bf16Precision prefill_precision() const { return precision_; }
  void set_prefill_precision(Bf16Precision p) { precision_ = p; }
  // Bytes of the load-time repack (0 when the GGUF bytes are read in place).
  uint64_t repacked_bytes() const { return repacked_.size(); }

 private:
  Linear();
  // The decode kernel on rows [row, row + n_rows) of the weight and n_tokens activation rows.
  void gemv_block(int64_t row, const uint8_t* act, int64_t act_stride, float* out,
                  int64_t ld_out, int64_t n_rows, int64_t n_tokens) const;

  LinearDesc desc_;
  const uint8_t* data_ = nullptr;
  size_t row_bytes_ = 0;
  std::unique_ptr<GemvKernel> kernel_;
  std::vector<uint8_t> repacked_;  // Q8_0 copy of a Q5_0 weight, else empty
  GGMLType run_type_ = GGMLType::F32;  // the type of data_ (Q8_0 for a repacked Q5_0)
  bool gemm_bf16_ = false;  // calls of more than kGemmMinTokens tokens use gemm_bf16_run
  Bf16Precision precision_ = Bf16Precision::bf16x3;
};

// Q5_0 rows -> Q8_0 rows with identical values (n_rows rows of k elements).
std::vector<uint8_t> repack_q5_0_to_q8_0(const uint8_t* src, int64_t n_rows, int64_t k);

// The plain twin for conformance tests: dst as above with float32 weights dequantized row by
// row and the input rounded the way `format` rounds it (round_act_row), summed in double.
void linear_reference(const LinearDesc& desc, const uint8_t* data, ActFormat format,
                      const float* x, int64_t ld_x, int64_t n_tok, float* dst, int64_t ld_dst);

}  // namespace ktx::cpu
