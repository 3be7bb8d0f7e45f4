// Activation quantization: see act_quant.h. Plain C++: it runs once per token per layer and
// touches kilobytes, while the kernels it feeds stream megabytes of weights.
#include "runtime/cpu/act_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace ktx::cpu {
namespace {

// int16-grade block of `n` elements split into hi/lo planes: returns the scale.
float quantize_block_q16(const float* x, int8_t* hi, int8_t* lo, int n) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = amax / static_cast<float>(kQ16Max);
  const float id = d > 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < n; ++i) {
    const float lim = static_cast<float>(kQ16Max);
    const int v = static_cast<int>(std::clamp(std::nearbyint(x[i] * id), -lim, lim));
    // Round half away from zero in integers: |h| <= (32512 + 127) / 255 = 127.
    const int h = v >= 0 ? (v + kQ16Base / 2) / kQ16Base : -((-v + kQ16Base / 2) / kQ16Base);
    hi[i] = static_cast<int8_t>(h);
    lo[i] = static_cast<int8_t>(v - kQ16Base * h);  // |lo| <= 127
  }
  return d;
}

int32_t q16_value(const int8_t* hi, const int8_t* lo, int64_t i) {
  return kQ16Base * hi[i] + lo[i];
}

}  // namespace

const char* act_format_name(ActFormat f) {
  switch (f) {
    case ActFormat::f32: return "f32";
    case ActFormat::q16_0: return "q16_0";
    case ActFormat::q16_k: return "q16_k";
  }
  return "unknown";
}

int64_t act_block_elems(ActFormat f) {
  switch (f) {
    case ActFormat::f32: return 1;
    case ActFormat::q16_0: return 32;
    case ActFormat::q16_k: return 256;
  }
  return 1;
}

size_t act_row_bytes(ActFormat f, int64_t n) {
  switch (f) {
    case ActFormat::f32: return static_cast<size_t>(n) * sizeof(float);
    case ActFormat::q16_0: return static_cast<size_t>(n / 32) * sizeof(ActBlockQ16_0);
    case ActFormat::q16_k: return static_cast<size_t>(n / 256) * sizeof(ActBlockQ16_K);
  }
  return 0;
}

ActFormat act_format_for(GGMLType weight_type, bool fast_kernel) {
  if (!fast_kernel) return ActFormat::f32;
  switch (weight_type) {
    case GGMLType::Q4_0: case GGMLType::Q4_1: case GGMLType::Q5_0: case GGMLType::Q5_1:
    case GGMLType::Q8_0:
      return ActFormat::q16_0;
    case GGMLType::Q2_K: case GGMLType::Q3_K: case GGMLType::Q4_K: case GGMLType::Q5_K:
    case GGMLType::Q6_K:
      return ActFormat::q16_k;
    default:
      return ActFormat::f32;
  }
}

void quantize_act_row(ActFormat f, const float* x, void* dst, int64_t n) {
  if (f == ActFormat::f32) {
    std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float));
  } else if (f == ActFormat::q16_0) {
    auto* blocks = static_cast<ActBlockQ16_0*>(dst);
    for (int64_t b = 0; b < n / 32; ++b) {
      blocks[b].d = quantize_block_q16(x + b * 32, blocks[b].hi, blocks[b].lo, 32);
    }
  } else {
    auto* blocks = static_cast<ActBlockQ16_K*>(dst);
    for (int64_t b = 0; b < n / 256; ++b) {
      ActBlockQ16_K& blk = blocks[b];
      blk.d = quantize_block_q16(x + b * 256, blk.hi, blk.lo, 256);
      std::fill(std::begin(blk.pad), std::end(blk.pad), 0.0f);
      for (int s = 0; s < 16; ++s) {
        int32_t sum = 0;
        for (int i = 0; i < 16; ++i) sum += q16_value(blk.hi, blk.lo, s * 16 + i);
        blk.bsum16[s] = sum;
      }
      for (int s = 0; s < 8; ++s) blk.bsum32[s] = blk.bsum16[2 * s] + blk.bsum16[2 * s + 1];
    }
  }
}

void dequantize_act_row(ActFormat f, const void* src, float* dst, int64_t n) {
  if (f == ActFormat::f32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
  } else if (f == ActFormat::q16_0) {
    const auto* blocks = static_cast<const ActBlockQ16_0*>(src);
    for (int64_t i = 0; i < n; ++i) {
      const ActBlockQ16_0& b = blocks[i / 32];
      dst[i] = b.d * static_cast<float>(q16_value(b.hi, b.lo, i % 32));
    }
  } else {
    const auto* blocks = static_cast<const ActBlockQ16_K*>(src);
    for (int64_t i = 0; i < n; ++i) {
      const ActBlockQ16_K& b = blocks[i / 256];
      dst[i] = b.d * static_cast<float>(q16_value(b.hi, b.lo, i % 256));
    }
  }
}

void round_act_row(ActFormat f, float* x, int64_t n) {
  if (f == ActFormat::f32) return;
  std::vector<uint8_t> tmp(act_row_bytes(f, n));
  quantize_act_row(f, x, tmp.data(), n);
  dequantize_act_row(f, tmp.data(), x, n);
}

}  // namespace ktx::cpu
