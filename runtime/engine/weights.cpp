// Weight rows and the reference matmuls (see weights.h for why the order is fixed).
#include "runtime/engine/weights.h"

#include <algorithm>

namespace ktx {
namespace {

// Per-thread scratch row; grows to the longest row seen.
float* scratch_row(int64_t n) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(n);
  return buf.data();
}

}  // namespace

Weight::Weight(const GGUFTensorInfo* info) : info_(info) {
  // check_tensors accepted the type and the GGUF reader the shape, so the row size exists.
  auto rb = ggml_row_bytes(info_->type, info_->ne[0]);
  row_bytes_ = rb.has_value() ? *rb : 0;
}

void Weight::cache_f32() {
  if (!cache_.empty()) return;
  cache_.resize(static_cast<size_t>(info_->n_elements()));
  for (int64_t r = 0; r < n_rows(); ++r)
    dequantize_row(info_->type, info_->data + r * row_bytes_, cache_.data() + r * row_len(),
                   row_len());
}

const float* Weight::row(int64_t r, float* buf) const {
  if (!cache_.empty()) return cache_.data() + r * row_len();
  dequantize_row(info_->type, info_->data + r * row_bytes_, buf, row_len());
  return buf;
}

float dot_f32(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

void matmul(cpu::ThreadPool& pool, const Weight& w, int64_t row0, int64_t n_out, const float* src,
            int64_t ld_src, int64_t n_tok, float* dst, int64_t ld_dst) {
  const int64_t k = w.row_len();
  // Give a thread at least ~64K multiply-adds; smaller jobs are not worth waking anyone.
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, k * n_tok));
  cpu::parallel_range(pool, n_out, grain, [&](int64_t r_begin, int64_t r_end) {
    float* buf = scratch_row(k);
    for (int64_t r = r_begin; r < r_end; ++r) {
      const float* wr = w.row(row0 + r, buf);
      for (int64_t t = 0; t < n_tok; ++t) dst[t * ld_dst + r] = dot_f32(wr, src + t * ld_src, k);
    }
  });
}

void matmul_transposed(const Weight& w, int64_t row0, int64_t n_in, const float* src,
                       int64_t ld_src, int64_t n_tok, float* dst, int64_t ld_dst) {
  const int64_t n = w.row_len();
  for (int64_t t = 0; t < n_tok; ++t) std::fill(dst + t * ld_dst, dst + t * ld_dst + n, 0.0f);
  float* buf = scratch_row(n);
  for (int64_t j = 0; j < n_in; ++j) {
    const float* wr = w.row(row0 + j, buf);
    for (int64_t t = 0; t < n_tok; ++t) {
      const float s = src[t * ld_src + j];
      float* d = dst + t * ld_dst;
      for (int64_t c = 0; c < n; ++c) d[c] += s * wr[c];
    }
  }
}

}  // namespace ktx
