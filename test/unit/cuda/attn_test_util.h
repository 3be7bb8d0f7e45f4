// Helpers of the GPU attention tests (test_cuda_attention*.cpp): a device with this arch's
// cubin and the bound kernels (null without a device: the test skips, saying so), device
// buffers from host vectors, random data, GGUF weights made from random floats.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/cuda/nvrtc.h"
#include "common/quant/quant.h"
#include "runtime/cuda/attention.h"
#include "runtime/cuda/dev_tensor.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/library.h"
#include "test/unit/cuda/gpu_test_util.h"

namespace ktx::cuda::attn_test {

using gpu_test::Gpu;
using gpu_test::open_gpu;
using gpu_test::random_floats;


template <typename T>
DeviceBuffer upload(const std::vector<T>& v) {
  auto b = DeviceBuffer::alloc(std::max<size_t>(4, v.size() * sizeof(T)));
  EXPECT_TRUE(b) << b.status().message();
  if (!v.empty()) EXPECT_TRUE(b->upload(v.data(), v.size() * sizeof(T)));
  return std::move(*b);
}

template <typename T>
std::vector<T> download(const DeviceBuffer& b, size_t n) {
  std::vector<T> v(n);
  const Status st = b.download(v.data(), n * sizeof(T));
  EXPECT_TRUE(st) << st.message();
  return v;
}

inline DeviceBuffer upload_pos(int32_t pos) { return upload(std::vector<int32_t>{pos}); }

// f16 rows as the cache holds them, widened.
inline std::vector<float> widen_f16(const std::vector<uint16_t>& h) {
  std::vector<float> f(h.size());
  for (size_t i = 0; i < h.size(); ++i) f[i] = fp16_to_fp32(h[i]);
  return f;
}

// A weight matrix of n_rows rows of row_len in a GGUF type: its bytes on the device and the
// floats the type decodes to (what every reference multiplies with).
struct HostWeight {
  GGMLType type = GGMLType::F32;
  int64_t row_len = 0, n_rows = 0, row_bytes = 0;
  std::vector<uint8_t> bytes;
  std::vector<float> deq;  // [n_rows][row_len]
  DeviceBuffer dev;
  DevTensor tensor() const { return {dev.get(), type, row_len, n_rows, row_bytes}; }
  const float* row(int64_t r) const { return deq.data() + r * row_len; }
};

inline HostWeight make_weight(GGMLType type, int64_t row_len, int64_t n_rows, float scale,
                              uint32_t seed) {
  HostWeight w;
  w.type = type;
  w.row_len = row_len;
  w.n_rows = n_rows;
  w.row_bytes = static_cast<int64_t>(*ggml_row_bytes(type, row_len));
  w.bytes.resize(static_cast<size_t>(w.row_bytes * n_rows));
  w.deq.resize(static_cast<size_t>(row_len * n_rows));
  const auto f = random_floats(w.deq.size(), scale, seed);
  for (int64_t r = 0; r < n_rows; ++r) {
    quantize_row(type, f.data() + r * row_len, w.bytes.data() + r * w.row_bytes, row_len);
    dequantize_row(type, w.bytes.data() + r * w.row_bytes, w.deq.data() + r * row_len, row_len);
  }
  w.dev = upload(w.bytes);
  return w;
}

}  // namespace ktx::cuda::attn_test
