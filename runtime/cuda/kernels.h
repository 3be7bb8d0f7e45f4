// Host side of the GPU kernel families (runtime/cuda/kernels/<family>/kernel.cuh): their entry
// points bound by name from a loaded Library, and one launcher per op with the shapes checked.
// All pointers are device pointers; launches go on `stream` and return at once.
#pragma once

#include <cuda_runtime_api.h>

#include <array>
#include <cstdint>
#include <map>

#include "common/quant/quant.h"
#include "runtime/cuda/library.h"

namespace ktx::cuda {

inline constexpr int kGemvMaxTokens = 8;  // KTX_GEMV_MAX_TOKENS in gemv/kernel.cuh
// Token tile of the GEMM family (KTX_GEMM_BN in gemm/kernel.cuh); its row tile is kGemmRows.
inline constexpr int kGemmTokens = 64;
inline constexpr int kGemmRows = 128;
inline constexpr int kGemmThreads = 256;  // KTX_GEMM_THREADS
// Products of more tokens than this take the GEMM (where the plan's code has it) instead of
// GEMVs of kGemvMaxTokens tokens each.
inline constexpr int kGemmMinTokens = 2 * kGemvMaxTokens;

// Rows per warp of the float GEMV family (gemv/kernel.cuh, also the per-head GEMVs): 8 for
// rows of at most 128 elements (half a warp each, KTX_GEMV_SHORT_ROWS = 4 rows per half), else 1.
inline int64_t gemv_rows_per_warp(int64_t k) { return k / 32 <= 4 ? 8 : 1; }

// Weight types the GEMV family reads in place.
bool gemv_supported(GGMLType type);
// The entry point name of a type's GEMV ("ktx_gemv_q4_k").
std::string gemv_kernel_name(GGMLType type);
// Weight types with an integer GEMV over int16-rounded activations (gemv_q16/kernel.cuh):
// Q4_K, Q5_K, Q6_K, Q8_0.
bool gemv16_supported(GGMLType type);

// Activations rounded for the integer GEMVs, per 32-element block: q [kGemvMaxTokens][k] int16
// and {d, d·Σq} per block (x ≈ d·q, |error| <= d/2, d = max|x| / 32767). Device scratch, made
// once per session for rows of up to k_cap elements; one stream uses it at a time.
class XQuant {
 public:
  static int64_t bytes_for(int64_t k_cap);
  static Expected<XQuant> alloc(int64_t k_cap);
  int64_t k_cap() const { return k_cap_; }
  short* q() const { return buf_.as<short>(); }
  float* s() const { return reinterpret_cast<float*>(buf_.as<char>() + s_offset_); }  // pairs
  size_t bytes() const { return buf_.size(); }

 private:
  DeviceBuffer buf_;
  int64_t k_cap_ = 0;
  size_t s_offset_ = 0;
};

class Kernels {
 public:
  // Errors: the image lacks an entry point (names it).
  static Expected<Kernels> bind(const Library& lib);

  // y[t * ld_y + r] = W[r] · x[t * ld_x] for r < n_rows, t < n_tok <= kGemvMaxTokens; W's rows
  // row_bytes apart, each k elements (a multiple of 32 and of the type's block).
  // With xq (k <= xq->k_cap) and a gemv16 type whose rows are aligned for it, x is rounded
  // into xq and the integer GEMV runs; otherwise every weight is decoded to float.
  Status gemv(GGMLType type, const void* w, int64_t row_bytes, const float* x, int64_t ld_x,
              float* y, int64_t ld_y, int64_t n_rows, int64_t k, int64_t n_tok,
              cudaStream_t stream = nullptr, XQuant* xq = nullptr) const;
  // Float GEMM for prefill batches (gemm/kernel.cuh): the same product for any n_tok >= 1, each
  // weight decoded once per kGemmTokens tokens, float sums in k order. False where the plan's
  // code lacks it (plans made before it) or KTX_CUDA_GEMM=0 turned it off.
  bool has_gemm(GGMLType type) const { return gemm_on_ && gemm_.count(type) != 0; }
  // Whether linear() runs a product of n_tok tokens on these weights as the GEMM.
  bool takes_gemm(GGMLType type, int64_t n_tok) const {
    return n_tok >= kGemmMinTokens && has_gemm(type);
  }
  // With the tensor-core form (has_gemm_mma, on unless set_mma(false) or KTX_CUDA_MMA=0) the
  // operands are rounded to bf16 and the products summed in float (gemm_mma_tile).
  Status gemm(GGMLType type, const void* w, int64_t row_bytes, const float* x, int64_t ld_x,
              float* y, int64_t ld_y, int64_t n_rows, int64_t k, int64_t n_tok,
              cudaStream_t stream = nullptr) const;
  void set_gemm(bool on) { gemm_on_ = on; }
  bool has_gemm_mma(GGMLType type) const { return mma_on_ && gemm_mma_.count(type) != 0; }
  // The exact float GEMM only (float32 comparisons: EngineOptions::gpu_float_gemv, tests).
  void set_mma(bool on) { mma_on_ = on; }
  bool mma_on() const { return mma_on_; }
  // Any number of tokens: the GEMM from kGemmMinTokens tokens where has_gemm, else gemv() in
  // launches of kGemvMaxTokens tokens (x, y advanced by ld_x, ld_y per token).
  Status linear(GGMLType type, const void* w, int64_t row_bytes, const float* x, int64_t ld_x,
                float* y, int64_t ld_y, int64_t n_rows, int64_t k, int64_t n_tok,
                cudaStream_t stream = nullptr, XQuant* xq = nullptr) const;
  // The two halves of the integer path, for products that share one input (gate and up):
  // quantize_x rounds x [n_tok][ld_x] (k elements per token) into xq; gemv16 reads it.
  Status quantize_x(const float* x, int64_t ld_x, int64_t k, int64_t n_tok, XQuant& xq,
                    cudaStream_t stream = nullptr) const;
  Status gemv16(GGMLType type, const void* w, int64_t row_bytes, const XQuant& xq, float* y,
                int64_t ld_y, int64_t n_rows, int64_t k, int64_t n_tok,
                cudaStream_t stream = nullptr) const;
  // Rows per warp of gemv16 for a matrix of n_rows rows: 4 or 2 where that still leaves at
  // least two blocks per SM (and the plan has the variant), else 1.
  int gemv16_rows_per_warp(GGMLType type, int64_t n_rows) const;
  // Caps the rows per warp (1, 2 or 4; the environment's KTX_CUDA_GEMV_ROWS sets it at bind):
  // for tests and A/B benchmarks.
  void set_gemv16_max_rows(int rows) { gemv16_max_rows_ = rows >= 4 ? 4 : rows >= 2 ? 2 : 1; }
  // Whether gemv16 splits each row's k over a block's four warps (one row per block): where
  // one row per warp is all the matrix allows and k >= 4096 (q_a, kv_a_mqa, the shared
  // experts' gate and up), so more blocks run with shorter dependent chains. The sums then run
  // in another order than the other variants' (a float rounding apart). KTX_CUDA_GEMV_SPLITK=0
  // (or set_gemv16_split_k(false)) turns it off; plans made before it lack it.
  bool gemv16_split_k(GGMLType type, int64_t n_rows, int64_t k) const;
  void set_gemv16_split_k(bool on) { gemv16_split_k_ = on; }
  // Whether gemv16 takes these weights (type, and the alignment its loads need).
  static bool gemv16_fits(GGMLType type, const void* w, int64_t row_bytes);
  // y[r] = x[r] / sqrt(mean(x[r]²) + eps) · w for n_rows rows of n.
  Status rms_norm(const float* x, int64_t ld_x, const float* w, float* y, int64_t ld_y,
                  int64_t n_rows, int64_t n, float eps, cudaStream_t stream = nullptr) const;
  // sum = a + b and y = rms_norm(sum) · w in one launch, rows of n (a, b, sum n apart; y ld_y
  // apart): the floats of add then rms_norm. Needs ktx_add_rms_norm (older plans lack it) and
  // 16-byte aligned pointers with n and ld_y multiples of 4 (add_rms_norm_fits).
  bool add_rms_norm_fits(const float* a, const float* b, const float* sum, const float* w,
                         const float* y, int64_t ld_y, int64_t n) const;
  Status add_rms_norm(const float* a, const float* b, float* sum, const float* w, float* y,
                      int64_t ld_y, int64_t n_rows, int64_t n, float eps,
                      cudaStream_t stream = nullptr) const;
  Status silu_mul(const float* g, const float* u, float* y, int64_t n, cudaStream_t stream = nullptr) const;
  Status add(const float* a, const float* b, float* y, int64_t n, cudaStream_t stream = nullptr) const;
  // The flag hand-off of CPU ops (handoff/kernel.cuh); `flags` is the device pointer of mapped
  // pinned words, flags[0] the call's sequence number. Plans made before the family existed
  // lack it: has_handoff() is then false and the callers use host functions.
  bool has_handoff() const { return flag_set_ != nullptr && flag_wait_ != nullptr; }
  Status flag_set(unsigned* flags, int index, cudaStream_t stream) const;
  Status flag_wait(const unsigned* flags, int index, cudaStream_t stream) const;

 private:
  std::map<GGMLType, cudaKernel_t> gemv_;
  std::map<GGMLType, cudaKernel_t> gemm_;  // optional per type (older plans lack the family)
  bool gemm_on_ = true;                    // KTX_CUDA_GEMM=0 turns it off
  std::map<GGMLType, cudaKernel_t> gemm_mma_;  // optional: the tensor-core form
  bool mma_on_ = true;                     // KTX_CUDA_MMA=0 turns it off
  // [tokens 1, 2, 4, 8][rows per warp 1, 2, 4; split k]; all but the first are optional (plans
  // made before them lack them: null).
  std::map<GGMLType, std::array<std::array<cudaKernel_t, 4>, 4>> gemv16_;  // [.][3]: split k
  int gemv16_min_blocks_ = 264;  // blocks a launch keeps when it takes more rows per warp
  int gemv16_max_rows_ = 4;      // KTX_CUDA_GEMV_ROWS caps the rows per warp (1, 2, 4)
  bool gemv16_split_k_ = true;   // KTX_CUDA_GEMV_SPLITK
  cudaKernel_t quantize_x16_ = nullptr;
  cudaKernel_t rms_norm_ = nullptr, silu_mul_ = nullptr, add_ = nullptr;
  cudaKernel_t add_rms_norm_ = nullptr;  // optional
  cudaKernel_t flag_set_ = nullptr, flag_wait_ = nullptr;
};

}  // namespace ktx::cuda
