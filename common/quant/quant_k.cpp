// Reference dequantization of the 256-element K-quant super-blocks (Q2_K, Q3_K, Q4_K, Q5_K,
// Q6_K), transcribed from ../shared/docs/QUANTS.md. The loops keep ggml's element order and
// its order of float operations (sub-block factor d*sc formed first, then times the level,
// minus dmin*mn), because a different association rounds differently and these functions are
// the bit-exact oracle for every fast kernel.
#include <cstring>

#include "common/quant/quant.h"
#include "common/quant/quant_blocks.h"

namespace ktx::quant_detail {

void unpack_scale_min_k4(const uint8_t* scales, int s, uint8_t* sc, uint8_t* mn) {
  if (s < 4) {
    *sc = scales[s] & 63;
    *mn = scales[s + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((scales[s + 4] & 15) | ((scales[s - 4] >> 6) << 4));
    *mn = static_cast<uint8_t>((scales[s + 4] >> 4) | ((scales[s] >> 6) << 4));
  }
}

void unpack_levels_k4(const uint8_t* blk, bool q5, uint8_t q[256]) {
  const uint8_t* qs = blk + (q5 ? 48 : 16);
  const uint8_t* qh = blk + 16;
  for (int k = 0; k < 256; ++k) {
    const int c = k / 64, e = k % 64, j = k / 32;
    const uint8_t byte = qs[32 * c + e % 32];
    int v = e < 32 ? byte & 15 : byte >> 4;
    if (q5) v |= ((qh[e % 32] >> j) & 1) << 4;
    q[k] = static_cast<uint8_t>(v);
  }
}

void unpack_scales_q3_k(const uint8_t* scales, uint8_t out[16]) {
  uint32_t a[3];
  std::memcpy(a, scales, 12);
  const uint32_t lo4 = 0x0f0f0f0f, lo2 = 0x03030303;
  const uint32_t s[4] = {
      (a[0] & lo4) | (((a[2] >> 0) & lo2) << 4),
      (a[1] & lo4) | (((a[2] >> 2) & lo2) << 4),
      ((a[0] >> 4) & lo4) | (((a[2] >> 4) & lo2) << 4),
      ((a[1] >> 4) & lo4) | (((a[2] >> 6) & lo2) << 4),
  };
  std::memcpy(out, s, 16);  // little-endian: byte order of s0..s3 is scale[0..15]
}

void dequantize_row_q2_k(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const auto b = load_block<BlockQ2_K>(src, i);
    const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
    float* y = dst + i * kQKK;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* q = b.qs + 32 * h;
      for (int k = 0; k < 4; ++k) {
        const int shift = 2 * k;
        for (int g = 0; g < 2; ++g) {  // two groups of 16, each with its own scale byte
          const uint8_t sb = b.scales[8 * h + 2 * k + g];
          const float dl = d * static_cast<float>(sb & 15);
          const float ml = dmin * static_cast<float>(sb >> 4);
          for (int l = 0; l < 16; ++l) {
            const int level = (q[16 * g + l] >> shift) & 3;
            y[128 * h + 32 * k + 16 * g + l] = dl * static_cast<float>(level) - ml;
          }
        }
      }
    }
  }
}

void dequantize_row_q3_k(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const auto b = load_block<BlockQ3_K>(src, i);
    const float d = fp16_to_fp32(b.d);
    uint8_t scale[16];
    unpack_scales_q3_k(b.scales, scale);
    float* y = dst + i * kQKK;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* q = b.qs + 32 * h;
      for (int k = 0; k < 4; ++k) {
        const int shift = 2 * k;
        const uint8_t m = static_cast<uint8_t>(1u << (4 * h + k));
        for (int g = 0; g < 2; ++g) {
          const int is = 8 * h + 2 * k + g;
          const float dl = d * static_cast<float>(static_cast<int>(scale[is]) - 32);
          for (int l = 0; l < 16; ++l) {
            const int e = 16 * g + l;
            const int level = ((q[e] >> shift) & 3) - ((b.hmask[e] & m) ? 0 : 4);
            y[128 * h + 32 * k + e] = dl * static_cast<float>(level);
          }
        }
      }
    }
  }
}

void dequantize_row_q4_k(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const auto b = load_block<BlockQ4_K>(src, i);
    const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
    float* y = dst + i * kQKK;
    for (int c = 0; c < 4; ++c) {
      uint8_t sc0, mn0, sc1, mn1;
      unpack_scale_min_k4(b.scales, 2 * c, &sc0, &mn0);
      unpack_scale_min_k4(b.scales, 2 * c + 1, &sc1, &mn1);
      const float d0 = d * sc0, m0 = dmin * mn0, d1 = d * sc1, m1 = dmin * mn1;
      const uint8_t* q = b.qs + 32 * c;
      for (int l = 0; l < 32; ++l) y[64 * c + l] = d0 * static_cast<float>(q[l] & 15) - m0;
      for (int l = 0; l < 32; ++l) y[64 * c + 32 + l] = d1 * static_cast<float>(q[l] >> 4) - m1;
    }
  }
}

void dequantize_row_q5_k(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const auto b = load_block<BlockQ5_K>(src, i);
    const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
    float* y = dst + i * kQKK;
    for (int c = 0; c < 4; ++c) {
      uint8_t sc0, mn0, sc1, mn1;
      unpack_scale_min_k4(b.scales, 2 * c, &sc0, &mn0);
      unpack_scale_min_k4(b.scales, 2 * c + 1, &sc1, &mn1);
      const float d0 = d * sc0, m0 = dmin * mn0, d1 = d * sc1, m1 = dmin * mn1;
      const uint8_t* q = b.qs + 32 * c;
      for (int l = 0; l < 32; ++l) {
        const int lo = (q[l] & 15) + (((b.qh[l] >> (2 * c)) & 1) ? 16 : 0);
        const int hi = (q[l] >> 4) + (((b.qh[l] >> (2 * c + 1)) & 1) ? 16 : 0);
        y[64 * c + l] = d0 * static_cast<float>(lo) - m0;
        y[64 * c + 32 + l] = d1 * static_cast<float>(hi) - m1;
      }
    }
  }
}

void dequantize_row_q6_k(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const auto b = load_block<BlockQ6_K>(src, i);
    const float d = fp16_to_fp32(b.d);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = b.ql + 64 * h;
      const uint8_t* qh = b.qh + 32 * h;
      const int8_t* sc = b.scales + 8 * h;
      float* y = dst + i * kQKK + 128 * h;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

}  // namespace ktx::quant_detail
