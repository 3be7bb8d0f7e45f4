// Round-to-nearest quantizers for the K-quants. Not ggml's importance-weighted search: they
// exist so tests and the model generator can write valid blocks whose decoding is close to the
// input. Two shapes cover all five formats:
//   affine    (Q2_K, Q4_K, Q5_K): x ~ (d*sc)*q - dmin*mn per sub-block, q in 0..max_q;
//   symmetric (Q3_K, Q6_K):       x ~ (d*sc)*q, sc signed, q in -neg..max.
// Each picks per-sub-block scales from the sub-block's extremes, then the super-block factors
// d/dmin from the largest of those, rounds everything to what will be stored, and quantizes
// the elements against the stored (decoded) factors so the decoder sees the smallest error.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/quant/quant.h"
#include "common/quant/quant_blocks.h"

namespace ktx::quant_detail {
namespace {

float stored_f16(float v, uint16_t* dst) {
  *dst = fp32_to_fp16(v);
  return fp16_to_fp32(*dst);
}

// Affine super-block of n_sub sub-blocks of sub_len elements; sub-block scales and mins are
// max_s-level integers. Writes d, dmin, sc[n_sub], mn[n_sub] and levels q[256].
void quantize_affine_k(const float* x, int n_sub, int sub_len, int max_q, int max_s,
                       uint16_t* d_out, uint16_t* dmin_out, uint8_t* sc, uint8_t* mn,
                       uint8_t* q) {
  float scale[16], offset[16];
  float max_scale = 0.0f, max_offset = 0.0f;
  for (int s = 0; s < n_sub; ++s) {
    const float* xs = x + s * sub_len;
    const auto [lo_it, hi_it] = std::minmax_element(xs, xs + sub_len);
    const float lo = std::min(0.0f, *lo_it);  // the min is subtracted, so it must be >= 0
    scale[s] = (*hi_it - lo) / static_cast<float>(max_q);
    offset[s] = -lo;
    max_scale = std::max(max_scale, scale[s]);
    max_offset = std::max(max_offset, offset[s]);
  }
  const float d = stored_f16(max_scale / static_cast<float>(max_s), d_out);
  const float dmin = stored_f16(max_offset / static_cast<float>(max_s), dmin_out);
  for (int s = 0; s < n_sub; ++s) {
    sc[s] = static_cast<uint8_t>(d > 0.0f ? clamp_round(scale[s] / d, 0, max_s) : 0);
    mn[s] = static_cast<uint8_t>(dmin > 0.0f ? clamp_round(offset[s] / dmin, 0, max_s) : 0);
    // Same float operations as the decoder: step = d*sc, shift = dmin*mn.
    const float step = d * static_cast<float>(sc[s]);
    const float shift = dmin * static_cast<float>(mn[s]);
    const float inv = step > 0.0f ? 1.0f / step : 0.0f;
    for (int l = 0; l < sub_len; ++l) {
      const int e = s * sub_len + l;
      q[e] = static_cast<uint8_t>(clamp_round((x[e] + shift) * inv, 0, max_q));
    }
  }
}

// Symmetric super-block of 16 sub-blocks of 16 elements: signed sub-block scales in
// [-max_s-1, max_s], levels in [-neg, neg-1]. The element of largest magnitude maps to -neg
// (the level without a positive twin). Writes d, sc[16] and levels q[256].
void quantize_symmetric_k(const float* x, int neg, int max_s, uint16_t* d_out, int* sc,
                          int* q) {
  float scale[16];
  float max_abs_scale = 0.0f;
  for (int s = 0; s < 16; ++s) {
    float best = 0.0f;
    for (int l = 0; l < 16; ++l) {
      if (std::fabs(x[16 * s + l]) > std::fabs(best)) best = x[16 * s + l];
    }
    scale[s] = best / static_cast<float>(-neg);
    max_abs_scale = std::max(max_abs_scale, std::fabs(scale[s]));
  }
  const float d = stored_f16(max_abs_scale / static_cast<float>(max_s), d_out);
  for (int s = 0; s < 16; ++s) {
    sc[s] = d > 0.0f ? clamp_round(scale[s] / d, -max_s - 1, max_s) : 0;
    const float step = d * static_cast<float>(sc[s]);
    const float inv = step != 0.0f ? 1.0f / step : 0.0f;
    for (int l = 0; l < 16; ++l) q[16 * s + l] = clamp_round(x[16 * s + l] * inv, -neg, neg - 1);
  }
}

// Inverse of unpack_scale_min_k4: eight 6-bit scales and mins into scales[12].
void pack_scale_min_k4(const uint8_t* sc, const uint8_t* mn, uint8_t* scales) {
  for (int s = 0; s < 4; ++s) {
    scales[s] = static_cast<uint8_t>(sc[s] | ((sc[s + 4] >> 4) << 6));
    scales[s + 4] = static_cast<uint8_t>(mn[s] | ((mn[s + 4] >> 4) << 6));
    scales[s + 8] = static_cast<uint8_t>((sc[s + 4] & 15) | ((mn[s + 4] & 15) << 4));
  }
}

}  // namespace

void quantize_row_q2_k(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQKK; ++i) {
    BlockQ2_K b{};
    uint8_t sc[16], mn[16], q[kQKK];
    quantize_affine_k(src + i * kQKK, 16, 16, 3, 15, &b.d, &b.dmin, sc, mn, q);
    for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<uint8_t>(sc[s] | (mn[s] << 4));
    // Element 128h + 32k + 16g + l sits in qs[32h + 16g + l] at bits 2k.
    for (int e = 0; e < kQKK; ++e) {
      const int h = e / 128, k = (e % 128) / 32, gl = e % 32;
      b.qs[32 * h + gl] |= static_cast<uint8_t>(q[e] << (2 * k));
    }
    store_block(dst, i, b);
  }
}

void quantize_row_q4_k(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQKK; ++i) {
    BlockQ4_K b{};
    uint8_t sc[8], mn[8], q[kQKK];
    quantize_affine_k(src + i * kQKK, 8, 32, 15, 63, &b.d, &b.dmin, sc, mn, q);
    pack_scale_min_k4(sc, mn, b.scales);
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        b.qs[32 * c + l] = static_cast<uint8_t>(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
      }
    }
    store_block(dst, i, b);
  }
}

void quantize_row_q5_k(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQKK; ++i) {
    BlockQ5_K b{};
    uint8_t sc[8], mn[8], q[kQKK];
    quantize_affine_k(src + i * kQKK, 8, 32, 31, 63, &b.d, &b.dmin, sc, mn, q);
    pack_scale_min_k4(sc, mn, b.scales);
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        const uint8_t lo = q[64 * c + l], hi = q[64 * c + 32 + l];
        b.qs[32 * c + l] = static_cast<uint8_t>((lo & 15) | ((hi & 15) << 4));
        b.qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
      }
    }
    store_block(dst, i, b);
  }
}

void quantize_row_q3_k(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQKK; ++i) {
    BlockQ3_K b{};
    int sc[16], q[kQKK];
    quantize_symmetric_k(src + i * kQKK, 4, 31, &b.d, sc, q);
    uint8_t u[16];  // biased 6-bit scales, in the order unpack_scales_q3_k yields them
    for (int s = 0; s < 16; ++s) u[s] = static_cast<uint8_t>(sc[s] + 32);
    for (int j = 0; j < 4; ++j) {
      b.scales[j] = static_cast<uint8_t>((u[j] & 15) | ((u[8 + j] & 15) << 4));
      b.scales[4 + j] = static_cast<uint8_t>((u[4 + j] & 15) | ((u[12 + j] & 15) << 4));
      b.scales[8 + j] = static_cast<uint8_t>((u[j] >> 4) | ((u[4 + j] >> 4) << 2) |
                                             ((u[8 + j] >> 4) << 4) | ((u[12 + j] >> 4) << 6));
    }
    // Element 128h + 32k + 16g + l: low bits in qs[32h + 16g + l] at 2k, high bit (set means
    // "no -4") in hmask[16g + l] at bit 4h + k.
    for (int e = 0; e < kQKK; ++e) {
      const int h = e / 128, k = (e % 128) / 32, gl = e % 32;
      const int u3 = q[e] + 4;  // 0..7
      b.qs[32 * h + gl] |= static_cast<uint8_t>((u3 & 3) << (2 * k));
      b.hmask[gl] |= static_cast<uint8_t>((u3 >> 2) << (4 * h + k));
    }
    store_block(dst, i, b);
  }
}

void quantize_row_q6_k(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQKK; ++i) {
    BlockQ6_K b{};
    int sc[16], q[kQKK];
    quantize_symmetric_k(src + i * kQKK, 32, 127, &b.d, sc, q);
    for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<int8_t>(sc[s]);
    // Element 128h + 32j + l: nibble in ql[64h + l + 32(j&1)] (low for j<2, high otherwise),
    // top two bits in qh[32h + l] at bits 2j.
    for (int e = 0; e < kQKK; ++e) {
      const int h = e / 128, j = (e % 128) / 32, l = e % 32;
      const int u6 = q[e] + 32;  // 0..63
      const int ql_index = 64 * h + l + 32 * (j & 1);
      b.ql[ql_index] |= static_cast<uint8_t>((u6 & 15) << (j < 2 ? 0 : 4));
      b.qh[32 * h + l] |= static_cast<uint8_t>((u6 >> 4) << (2 * j));
    }
    store_block(dst, i, b);
  }
}

}  // namespace ktx::quant_detail
