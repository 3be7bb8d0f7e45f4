// Host side of the GPU kernel families (runtime/cuda/kernels/<family>/kernel.cuh): their entry
// points bound by name from a loaded Library, and one launcher per op with the shapes checked.
// All pointers are device pointers; launches go on `stream` and return at once.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>

#include "common/quant/quant.h"
#include "runtime/cuda/library.h"

namespace ktx::cuda {

inline constexpr int kGemvMaxTokens = 8;  // KTX_GEMV_MAX_TOKENS in gemv/kernel.cuh

// Weight types the GEMV family reads in place.
bool gemv_supported(GGMLType type);
// The entry point name of a type's GEMV ("ktx_gemv_q4_k").
std::string gemv_kernel_name(GGMLType type);

class Kernels {
 public:
  // Errors: the image lacks an entry point (names it).
  static Expected<Kernels> bind(const Library& lib);

  // y[t * ld_y + r] = W[r] · x[t * ld_x] for r < n_rows, t < n_tok <= kGemvMaxTokens; W's rows
  // row_bytes apart, each k elements (a multiple of 32 and of the type's block).
  Status gemv(GGMLType type, const void* w, int64_t row_bytes, const float* x, int64_t ld_x,
              float* y, int64_t ld_y, int64_t n_rows, int64_t k, int64_t n_tok,
              cudaStream_t stream = nullptr) const;
  // y[r] = x[r] / sqrt(mean(x[r]²) + eps) · w for n_rows rows of n.
  Status rms_norm(const float* x, int64_t ld_x, const float* w, float* y, int64_t ld_y,
                  int64_t n_rows, int64_t n, float eps, cudaStream_t stream = nullptr) const;
  Status silu_mul(const float* g, const float* u, float* y, int64_t n, cudaStream_t stream = nullptr) const;
  Status add(const float* a, const float* b, float* y, int64_t n, cudaStream_t stream = nullptr) const;

 private:
  std::map<GGMLType, cudaKernel_t> gemv_;
  cudaKernel_t rms_norm_ = nullptr, silu_mul_ = nullptr, add_ = nullptr;
};

}  // namespace ktx::cuda
