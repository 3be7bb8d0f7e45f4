// Activation quantization: see act_quant.h. Plain C++, plus an AVX2 body of the block
// quantizer chosen at run time that gives the same bytes (prefill quantizes every token's
// input and every routed pair's h: at ~12 ns per element in scalar code that was 10–20% of a
// prefill layer).
#include "runtime/cpu/act_quant.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/hw/cpu_features.h"

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

// quantize_block_q16 for n a multiple of 16, also writing the sum of v per 16 elements to
// sum16[n / 16]: the same operations per element (x·id rounded to nearest even, clamped;
// h = ⌊(|v| + 127) / 255⌋ with the sign of v, exact in float: |v| + 127 < 2^15 and a quotient
// within 1/255 of an integer never rounds across it), so the same bytes as the scalar code.
__attribute__((target("avx2"))) float quantize_block_q16_avx2(const float* x, int8_t* hi,
                                                               int8_t* lo, int n,
                                                               int32_t* sum16) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 amax = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8) {
    amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
  }
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  const float d = _mm_cvtss_f32(m) / static_cast<float>(kQ16Max);
  const float id = d > 0.0f ? 1.0f / d : 0.0f;
  const __m256 idv = _mm256_set1_ps(id), lim = _mm256_set1_ps(static_cast<float>(kQ16Max));
  const __m256 nlim = _mm256_set1_ps(-static_cast<float>(kQ16Max));
  const __m256 half = _mm256_set1_ps(static_cast<float>(kQ16Base / 2));
  const __m256 base = _mm256_set1_ps(static_cast<float>(kQ16Base));
  const __m256i base_i = _mm256_set1_epi32(kQ16Base);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int i = 0; i < n; i += 16) {
    __m256i v[2], h[2];
    for (int j = 0; j < 2; ++j) {
      __m256 f = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * j), idv),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      f = _mm256_min_ps(_mm256_max_ps(f, nlim), lim);
      const __m256 a = _mm256_andnot_ps(sign, f);
      const __m256 q = _mm256_floor_ps(_mm256_div_ps(_mm256_add_ps(a, half), base));
      v[j] = _mm256_cvtps_epi32(f);
      h[j] = _mm256_sign_epi32(_mm256_cvtps_epi32(q), v[j]);  // sign of v (0 stays 0)
    }
    const __m256i l0 = _mm256_sub_epi32(v[0], _mm256_mullo_epi32(h[0], base_i));
    const __m256i l1 = _mm256_sub_epi32(v[1], _mm256_mullo_epi32(h[1], base_i));
    // int32 -> int8 (|.| <= 127): two packs interleave 128-bit lanes; the permute undoes it.
    const __m256i hb = _mm256_permutevar8x32_epi32(
        _mm256_packs_epi16(_mm256_packs_epi32(h[0], h[1]), _mm256_setzero_si256()), order);
    const __m256i lb = _mm256_permutevar8x32_epi32(
        _mm256_packs_epi16(_mm256_packs_epi32(l0, l1), _mm256_setzero_si256()), order);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(hi + i), _mm256_castsi256_si128(hb));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(lo + i), _mm256_castsi256_si128(lb));
    if (sum16) {
      const __m256i s = _mm256_add_epi32(v[0], v[1]);
      __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
      t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
      t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
      sum16[i / 16] = _mm_cvtsi128_si32(t);
    }
  }
  return d;
}

// One 256-element q8_k32 block, plain C++: per 32 elements d = max|x| / 127 and
// q = x·(1/d) rounded to nearest even, clamped.
void quantize_block_q8_k32(const float* x, ActBlockQ8_K32* blk) {
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xs[i]));
    const float d = amax / static_cast<float>(kQ8Max);
    const float id = d > 0.0f ? 1.0f / d : 0.0f;
    int32_t sum = 0;
    for (int i = 0; i < 32; ++i) {
      const float lim = static_cast<float>(kQ8Max);
      const int v = static_cast<int>(std::clamp(std::nearbyint(xs[i] * id), -lim, lim));
      blk->q[32 * j + i] = static_cast<int8_t>(v);
      sum += v;
    }
    blk->d[j] = d;
    blk->qsum[j] = sum;
  }
}

// The same block with AVX2: the same float operations per element (one multiply, round to
// nearest even, clamp), so the same bytes.
__attribute__((target("avx2"))) void quantize_block_q8_k32_avx2(const float* x,
                                                                ActBlockQ8_K32* blk) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 lim = _mm256_set1_ps(static_cast<float>(kQ8Max)), nlim = _mm256_set1_ps(-127.0f);
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    __m256 v[4], amax = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(xs + 8 * i);
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[i]));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    const float d = _mm_cvtss_f32(m) / static_cast<float>(kQ8Max);
    const __m256 id = _mm256_set1_ps(d > 0.0f ? 1.0f / d : 0.0f);
    __m256i q[4];
    for (int i = 0; i < 4; ++i) {
      const __m256 r = _mm256_round_ps(_mm256_mul_ps(v[i], id),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q[i] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, nlim), lim));
    }
    // int32 -> int8 in element order (the packs interleave 128-bit lanes; the permute undoes it).
    const __m256i w01 = _mm256_packs_epi32(q[0], q[1]), w23 = _mm256_packs_epi32(q[2], q[3]);
    const __m256i b = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23),
                                                  _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(blk->q + 32 * j), b);
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    blk->d[j] = d;
    blk->qsum[j] = _mm_cvtsi128_si32(s4);
  }
}

bool use_avx2() {
  static const bool ok = detect_cpu_isa().avx2;
  return ok;
}

// One block: the AVX2 body when `fast` and the CPU has it, else the plain twin (the same
// bytes); sum16, if not null, receives the sums of v per 16 elements.
float quantize_block(const float* x, int8_t* hi, int8_t* lo, int n, int32_t* sum16, bool fast) {
  if (fast && use_avx2() && n % 16 == 0) return quantize_block_q16_avx2(x, hi, lo, n, sum16);
  const float d = quantize_block_q16(x, hi, lo, n);
  for (int s = 0; sum16 && s < n / 16; ++s) {
    int32_t sum = 0;
    for (int i = 0; i < 16; ++i) sum += q16_value(hi, lo, s * 16 + i);
    sum16[s] = sum;
  }
  return d;
}

}  // namespace

const char* act_format_name(ActFormat f) {
  switch (f) {
    case ActFormat::f32: return "f32";
    case ActFormat::q16_0: return "q16_0";
    case ActFormat::q16_k: return "q16_k";
    case ActFormat::q8_k32: return "q8_k32";
  }
  return "unknown";
}

int64_t act_block_elems(ActFormat f) {
  switch (f) {
    case ActFormat::f32: return 1;
    case ActFormat::q16_0: return 32;
    case ActFormat::q16_k: return 256;
    case ActFormat::q8_k32: return 256;
  }
  return 1;
}

size_t act_row_bytes(ActFormat f, int64_t n) {
  switch (f) {
    case ActFormat::f32: return static_cast<size_t>(n) * sizeof(float);
    case ActFormat::q16_0: return static_cast<size_t>(n / 32) * sizeof(ActBlockQ16_0);
    case ActFormat::q16_k: return static_cast<size_t>(n / 256) * sizeof(ActBlockQ16_K);
    case ActFormat::q8_k32: return static_cast<size_t>(n / 256) * sizeof(ActBlockQ8_K32);
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

namespace {

// Both entry points share this body; `fast` picks the AVX2 block quantizer when the CPU has it.
void quantize_row(ActFormat f, const float* x, void* dst, int64_t n, bool fast) {
  if (f == ActFormat::f32) {
    std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float));
  } else if (f == ActFormat::q16_0) {
    auto* blocks = static_cast<ActBlockQ16_0*>(dst);
    for (int64_t b = 0; b < n / 32; ++b) {
      blocks[b].d = quantize_block(x + b * 32, blocks[b].hi, blocks[b].lo, 32, nullptr, fast);
    }
  } else if (f == ActFormat::q8_k32) {
    auto* blocks = static_cast<ActBlockQ8_K32*>(dst);
    for (int64_t b = 0; b < n / 256; ++b) {
      if (fast && use_avx2()) {
        quantize_block_q8_k32_avx2(x + b * 256, &blocks[b]);
      } else {
        quantize_block_q8_k32(x + b * 256, &blocks[b]);
      }
    }
  } else {
    auto* blocks = static_cast<ActBlockQ16_K*>(dst);
    for (int64_t b = 0; b < n / 256; ++b) {
      ActBlockQ16_K& blk = blocks[b];
      blk.d = quantize_block(x + b * 256, blk.hi, blk.lo, 256, blk.bsum16, fast);
      std::fill(std::begin(blk.pad), std::end(blk.pad), 0.0f);
      for (int s = 0; s < 8; ++s) blk.bsum32[s] = blk.bsum16[2 * s] + blk.bsum16[2 * s + 1];
    }
  }
}

}  // namespace

void quantize_act_row(ActFormat f, const float* x, void* dst, int64_t n) {
  quantize_row(f, x, dst, n, true);
}

void quantize_act_row_ref(ActFormat f, const float* x, void* dst, int64_t n) {
  quantize_row(f, x, dst, n, false);
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
  } else if (f == ActFormat::q8_k32) {
    const auto* blocks = static_cast<const ActBlockQ8_K32*>(src);
    for (int64_t i = 0; i < n; ++i) {
      const ActBlockQ8_K32& b = blocks[i / 256];
      dst[i] = b.d[(i % 256) / 32] * static_cast<float>(b.q[i % 256]);
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
