// The 32-element block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): reference dequantization,
// written element by element from ../shared/docs/QUANTS.md with ggml's order of float
// operations (so results match ggml bit for bit), and a plain round-to-nearest quantizer.
//
// Quantizers pick the block scale from the block's extremes, round it to f16 first and
// quantize against that stored value, so the error is what the decoder will actually see.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/quant/quant.h"
#include "common/quant/quant_blocks.h"

namespace ktx::quant_detail {
namespace {

// The element of largest magnitude, with its sign: symmetric formats map it to the most
// negative level (-8 / -16), which has no positive twin, so no range is wasted.
float signed_absmax(const float* x, int n) {
  float best = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (std::fabs(x[j]) > std::fabs(best)) best = x[j];
  }
  return best;
}

// Store d as f16 and return the inverse of the value actually stored (0 for an all-zero block).
float store_scale(float d, uint16_t* dst) {
  *dst = fp32_to_fp16(d);
  const float stored = fp16_to_fp32(*dst);
  return stored != 0.0f ? 1.0f / stored : 0.0f;
}

}  // namespace

void dequantize_row_q4_0(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK; ++i) {
    const auto b = load_block<BlockQ4_0>(src, i);
    const float d = fp16_to_fp32(b.d);
    float* y = dst + i * kQK;
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>((b.qs[j] & 15) - 8) * d;
      y[j + 16] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_row_q4_1(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK; ++i) {
    const auto b = load_block<BlockQ4_1>(src, i);
    const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
    float* y = dst + i * kQK;
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>(b.qs[j] & 15) * d + m;
      y[j + 16] = static_cast<float>(b.qs[j] >> 4) * d + m;
    }
  }
}

void dequantize_row_q5_0(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK; ++i) {
    const auto b = load_block<BlockQ5_0>(src, i);
    const float d = fp16_to_fp32(b.d);
    uint32_t h;
    std::memcpy(&h, b.qh, 4);
    float* y = dst + i * kQK;
    for (int j = 0; j < 16; ++j) {
      const int q0 = (b.qs[j] & 15) | static_cast<int>(((h >> j) & 1) << 4);
      const int q1 = (b.qs[j] >> 4) | static_cast<int>(((h >> (j + 16)) & 1) << 4);
      y[j] = static_cast<float>(q0 - 16) * d;
      y[j + 16] = static_cast<float>(q1 - 16) * d;
    }
  }
}

void dequantize_row_q5_1(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK; ++i) {
    const auto b = load_block<BlockQ5_1>(src, i);
    const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
    uint32_t h;
    std::memcpy(&h, b.qh, 4);
    float* y = dst + i * kQK;
    for (int j = 0; j < 16; ++j) {
      const int q0 = (b.qs[j] & 15) | static_cast<int>(((h >> j) & 1) << 4);
      const int q1 = (b.qs[j] >> 4) | static_cast<int>(((h >> (j + 16)) & 1) << 4);
      y[j] = static_cast<float>(q0) * d + m;
      y[j + 16] = static_cast<float>(q1) * d + m;
    }
  }
}

void dequantize_row_q8_0(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK; ++i) {
    const auto b = load_block<BlockQ8_0>(src, i);
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < kQK; ++j) dst[i * kQK + j] = static_cast<float>(b.qs[j]) * d;
  }
}

void quantize_row_q4_0(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float* x = src + i * kQK;
    BlockQ4_0 b{};
    const float id = store_scale(signed_absmax(x, kQK) / -8.0f, &b.d);
    for (int j = 0; j < 16; ++j) {
      const int q0 = clamp_round(x[j] * id, -8, 7) + 8;
      const int q1 = clamp_round(x[j + 16] * id, -8, 7) + 8;
      b.qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
    store_block(dst, i, b);
  }
}

void quantize_row_q5_0(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float* x = src + i * kQK;
    BlockQ5_0 b{};
    const float id = store_scale(signed_absmax(x, kQK) / -16.0f, &b.d);
    uint32_t h = 0;
    for (int j = 0; j < 16; ++j) {
      const int q0 = clamp_round(x[j] * id, -16, 15) + 16;
      const int q1 = clamp_round(x[j + 16] * id, -16, 15) + 16;
      b.qs[j] = static_cast<uint8_t>((q0 & 15) | ((q1 & 15) << 4));
      h |= static_cast<uint32_t>(q0 >> 4) << j;
      h |= static_cast<uint32_t>(q1 >> 4) << (j + 16);
    }
    std::memcpy(b.qh, &h, 4);
    store_block(dst, i, b);
  }
}

namespace {

// Shared by Q4_1 and Q5_1: y = q*d + m over levels 0..max_q, m the block minimum. Returns the
// levels in q[32]; the caller packs them.
void quantize_affine(const float* x, int max_q, uint16_t* d_out, uint16_t* m_out, int* q) {
  const auto [lo, hi] = std::minmax_element(x, x + kQK);
  *m_out = fp32_to_fp16(*lo);
  const float m = fp16_to_fp32(*m_out);
  const float id = store_scale((*hi - *lo) / static_cast<float>(max_q), d_out);
  for (int j = 0; j < kQK; ++j) q[j] = clamp_round((x[j] - m) * id, 0, max_q);
}

}  // namespace

void quantize_row_q4_1(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK; ++i) {
    BlockQ4_1 b{};
    int q[kQK];
    quantize_affine(src + i * kQK, 15, &b.d, &b.m, q);
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
    store_block(dst, i, b);
  }
}

void quantize_row_q5_1(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK; ++i) {
    BlockQ5_1 b{};
    int q[kQK];
    quantize_affine(src + i * kQK, 31, &b.d, &b.m, q);
    uint32_t h = 0;
    for (int j = 0; j < 16; ++j) {
      b.qs[j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
      h |= static_cast<uint32_t>(q[j] >> 4) << j;
      h |= static_cast<uint32_t>(q[j + 16] >> 4) << (j + 16);
    }
    std::memcpy(b.qh, &h, 4);
    store_block(dst, i, b);
  }
}

void quantize_row_q8_0(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float* x = src + i * kQK;
    BlockQ8_0 b{};
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float id = store_scale(amax / 127.0f, &b.d);
    for (int j = 0; j < kQK; ++j) b.qs[j] = static_cast<int8_t>(clamp_round(x[j] * id, -127, 127));
    store_block(dst, i, b);
  }
}

}  // namespace ktx::quant_detail
