// Weight access for the reference engine: a GGUF tensor seen as rows of float32. Rows come
// from an f32 copy when the model is small enough to cache (a size-bounded choice made at
// load), otherwise they are dequantized on demand into thread-local buffers, so that models
// far larger than RAM-as-f32 still run (slowly). The matmuls here are the only place weights
// are read; every output element is one dot product in a fixed order, so a token's result
// does not depend on how many tokens share the call or how rows are split over threads.
#pragma once

#include <cstdint>
#include <vector>

#include "common/gguf/gguf.h"
#include "runtime/cpu/thread_pool.h"

namespace ktx {

class Weight {
 public:
  explicit Weight(const GGUFTensorInfo* info);

  const GGUFTensorInfo& info() const { return *info_; }
  int64_t row_len() const { return info_->ne[0]; }
  int64_t n_rows() const { return info_->n_rows(); }
  uint64_t f32_bytes() const { return static_cast<uint64_t>(info_->n_elements()) * 4; }

  // Dequantize the whole tensor into an f32 cache (row() then returns pointers into it).
  void cache_f32();
  uint64_t cached_bytes() const { return cache_.size() * sizeof(float); }
  // Row r as float32: a pointer into the cache, or `buf` (row_len() floats) filled with it.
  const float* row(int64_t r, float* buf) const;

 private:
  const GGUFTensorInfo* info_;
  uint64_t row_bytes_ = 0;
  std::vector<float> cache_;
};

// Float32 dot product with a fixed summation order (8 partial sums, then a fixed tree).
float dot_f32(const float* a, const float* b, int64_t n);

// dst[t * ld_dst + r] = dot(W.row(row0 + r), src + t * ld_src) for r < n_out, t < n_tok.
// Parallel over rows; src rows hold W.row_len() values.
void matmul(cpu::ThreadPool& pool, const Weight& w, int64_t row0, int64_t n_out, const float* src,
            int64_t ld_src, int64_t n_tok, float* dst, int64_t ld_dst);
// Whole-matrix form: dst [n_tok][n_rows] = src [n_tok][row_len] x W^T.
inline void matmul(cpu::ThreadPool& pool, const Weight& w, const float* src, int64_t n_tok, float* dst) {
  matmul(pool, w, 0, w.n_rows(), src, w.row_len(), n_tok, dst, w.n_rows());
}

// Transposed product over a block of rows (single-threaded; callers split over heads):
// dst[t * ld_dst + c] = sum_j src[t * ld_src + j] * W.row(row0 + j)[c], j < n_in, c < row_len.
void matmul_transposed(const Weight& w, int64_t row0, int64_t n_in, const float* src,
                       int64_t ld_src, int64_t n_tok, float* dst, int64_t ld_dst);

}  // namespace ktx
