// Internal: the block primitives of attention_flash.h written once over a vector type V and
// instantiated by attention_avx512.cpp (V = 16 floats) and attention_avx2.cpp (V = 8 floats),
// each compiled for its ISA. V is defined in an anonymous namespace of its translation unit,
// so every instantiation here has internal linkage: nothing built with AVX-512 can be merged
// by the linker into code that runs before the CPU check. For the same reason this header
// uses no standard-library templates.
//
// V provides: W (lanes), kQkRows (rows per QK register block), kPvVecs (vectors per PV
// register block), reg, load/store/set1/zero/add/mul/fmadd/max, hsum/hmax, sum4 (four
// horizontal sums at once), exp_neg (e^x for x <= 0, exactly 0 below -87), widen_f16/bf16
// (W cache elements to floats), widen_i8 (W int8 to floats).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/quant/quant.h"
#include "runtime/cpu/attention_flash.h"

namespace ktx::cpu::attn::simd {

// Elements [col0, col0 + n) of one q8_0 row: the part of a block before a block boundary and
// after the last whole block element by element, whole blocks W lanes at a time. q * scale is
// one rounding either way, so both give dequantize_row_q8_0's bits.
template <class V>
void widen_q8_0(const uint8_t* row, int64_t col0, int64_t n, float* d) {
  auto scale = [row](int64_t blk) {
    uint16_t h;
    std::memcpy(&h, row + blk * kKvQ8BlockBytes, sizeof(h));
    return fp16_to_fp32(h);
  };
  auto elem = [&](int64_t e) {
    const auto q = static_cast<int8_t>(row[e / kKvQ8Block * kKvQ8BlockBytes + 2 + e % kKvQ8Block]);
    return static_cast<float>(q) * scale(e / kKvQ8Block);
  };
  int64_t i = 0;
  for (; i < n && (col0 + i) % kKvQ8Block != 0; ++i) d[i] = elem(col0 + i);
  for (; i + kKvQ8Block <= n; i += kKvQ8Block) {
    const int64_t blk = (col0 + i) / kKvQ8Block;
    const auto* qs = reinterpret_cast<const int8_t*>(row + blk * kKvQ8BlockBytes + 2);
    const typename V::reg vd = V::set1(scale(blk));
    for (int64_t j = 0; j < kKvQ8Block; j += V::W) V::store(d + i + j, V::mul(V::widen_i8(qs + j), vd));
  }
  for (; i < n; ++i) d[i] = elem(col0 + i);
}

template <class V>
void widen_rows(KvType t, const void* src, size_t row_bytes, int64_t col0, int64_t rows,
                int64_t n, float* dst, int64_t dst_ld) {
  const int64_t nv = n / V::W * V::W;
  for (int64_t r = 0; r < rows; ++r) {
    float* d = dst + r * dst_ld;
    const uint8_t* row = static_cast<const uint8_t*>(src) + r * row_bytes;
    switch (t) {
      case KvType::f32:
        std::memcpy(d, reinterpret_cast<const float*>(row) + col0, sizeof(float) * n);
        break;
      case KvType::f16: {
        const uint16_t* h = reinterpret_cast<const uint16_t*>(row) + col0;
        for (int64_t i = 0; i < nv; i += V::W) V::store(d + i, V::widen_f16(h + i));
        for (int64_t i = nv; i < n; ++i) d[i] = fp16_to_fp32(h[i]);
        break;
      }
      case KvType::bf16: {
        const uint16_t* h = reinterpret_cast<const uint16_t*>(row) + col0;
        for (int64_t i = 0; i < nv; i += V::W) V::store(d + i, V::widen_bf16(h + i));
        for (int64_t i = nv; i < n; ++i) d[i] = bf16_to_fp32(h[i]);
        break;
      }
      case KvType::q8_0: widen_q8_0<V>(row, col0, n, d); break;
    }
  }
}

// Register block of kQkRows rows x 4 keys: q and k vectors are each loaded once per block
// and the 4 dot products of a row are reduced together (sum4), not one by one.
template <class V>
void qk(const float* q, int64_t q_ld, const float* k, int64_t k_ld, int64_t rows, int64_t keys,
        int64_t d, float* s, int64_t s_ld) {
  constexpr int R = V::kQkRows;
  for (int64_t m = 0; m < rows; m += R) {
    for (int64_t j = 0; j < keys; j += 4) {
      typename V::reg acc[R][4];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) acc[r][c] = V::zero();
      const float* k0 = k + j * k_ld;
      for (int64_t i = 0; i < d; i += V::W) {
        typename V::reg kv[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) kv[c] = V::load(k0 + c * k_ld + i);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const typename V::reg qv = V::load(q + (m + r) * q_ld + i);
#pragma GCC unroll 4
          for (int c = 0; c < 4; ++c) acc[r][c] = V::fmadd(qv, kv[c], acc[r][c]);
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
        V::sum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3], s + (m + r) * s_ld + j);
    }
  }
}

template <class V>
void softmax(float* s, int64_t s_ld, int64_t rows, const int64_t* valid, float scale, float* m,
             float* l, float* corr) {
  const float neg_inf = -INFINITY;
  const typename V::reg vscale = V::set1(scale);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = s + r * s_ld;
    const int64_t n = valid[r];
    if (n == 0) {  // nothing visible in this block: state unchanged, P row zero
      for (int64_t j = 0; j < kBlockKeys; ++j) row[j] = 0.0f;
      corr[r] = 1.0f;
      continue;
    }
    for (int64_t j = n; j < kBlockKeys; ++j) row[j] = neg_inf;
    typename V::reg vmax = V::set1(neg_inf);
    for (int64_t j = 0; j < kBlockKeys; j += V::W) {
      const typename V::reg x = V::mul(V::load(row + j), vscale);
      V::store(row + j, x);
      vmax = V::max(vmax, x);
    }
    const float bmax = V::hmax(vmax);
    const float m_new = m[r] > bmax ? m[r] : bmax;
    // exp(-inf) = 0: the first visible block replaces the zero state outright.
    corr[r] = m[r] == neg_inf ? 0.0f : __builtin_expf(m[r] - m_new);
    const typename V::reg vm = V::set1(m_new);
    typename V::reg vsum = V::zero();
    for (int64_t j = 0; j < kBlockKeys; j += V::W) {
      const typename V::reg e = V::exp_neg(V::sub(V::load(row + j), vm));
      V::store(row + j, e);
      vsum = V::add(vsum, e);
    }
    m[r] = m_new;
    l[r] = l[r] * corr[r] + V::hsum(vsum);
  }
}

// O[m..m+4)[i..i + C vectors) = O * corr + P·V: a register block of 4 rows x C vectors of O,
// held across all keys of the block.
template <class V, int C>
void pv_tile(const float* p, int64_t p_ld, const float* v, int64_t v_ld, int64_t m, int64_t keys,
             int64_t i, const float* corr, float* o, int64_t o_ld) {
  typename V::reg acc[4][C];
#pragma GCC unroll 4
  for (int r = 0; r < 4; ++r) {
    const typename V::reg cr = V::set1(corr[m + r]);
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) acc[r][c] = V::mul(V::load(o + (m + r) * o_ld + i + c * V::W), cr);
  }
  for (int64_t j = 0; j < keys; ++j) {
    typename V::reg vv[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) vv[c] = V::load(v + j * v_ld + i + c * V::W);
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
      const typename V::reg pr = V::set1(p[(m + r) * p_ld + j]);
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) acc[r][c] = V::fmadd(pr, vv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < 4; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) V::store(o + (m + r) * o_ld + i + c * V::W, acc[r][c]);
}

// Column strips outside, row blocks inside: a strip of the V block (keys x C vectors, 16 KiB
// at 64 keys) comes from L2 once and from L1 for every further row block; the whole V block
// (128 KiB for MLA's 512-wide latent) would not stay in L1 across row blocks.
template <class V>
void pv(const float* p, int64_t p_ld, const float* v, int64_t v_ld, int64_t rows, int64_t keys,
        int64_t d, const float* corr, float* o, int64_t o_ld) {
  constexpr int C = V::kPvVecs;
  int64_t i = 0;
  for (; i + C * V::W <= d; i += C * V::W)
    for (int64_t m = 0; m < rows; m += 4) pv_tile<V, C>(p, p_ld, v, v_ld, m, keys, i, corr, o, o_ld);
  for (; i < d; i += V::W)  // widths that are not a whole strip
    for (int64_t m = 0; m < rows; m += 4) pv_tile<V, 1>(p, p_ld, v, v_ld, m, keys, i, corr, o, o_ld);
}

template <class V>
const Kernels* make_kernels(const char* name) {
  static const Kernels k{name, &widen_rows<V>, &qk<V>, &softmax<V>, &pv<V>};
  return &k;
}

}  // namespace ktx::cpu::attn::simd
