// Shared helpers of the dequantization tests: little-endian fp16 fields in hand-built blocks,
// and decoding a row into a buffer pre-filled with a sentinel so unwritten elements show.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "common/quant/quant.h"

namespace ktx::quant_test {

inline void put16(std::vector<uint8_t>& b, size_t at, uint16_t v) { std::memcpy(&b[at], &v, 2); }

inline float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_fp32(h);
}

inline std::vector<float> decode(GGMLType t, const std::vector<uint8_t>& bytes, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n), -12345.0f);
  dequantize_row(t, bytes.data(), y.data(), n);
  return y;
}

}  // namespace ktx::quant_test
