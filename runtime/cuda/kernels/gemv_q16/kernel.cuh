// GEMV on K-quant and Q8_0 blocks in place with the activations rounded to int16, for decode:
// y[t * ld_y + r] = W[r] · x[t], the products in integer (dp2a: two int16 × int8 pairs).
//
// ktx_quantize_x16 rounds x once per call: per 32-element block, d = max|x| / 32767,
// q = rint(x · 32767 / max|x|), and d·Σq (the Q4_K/Q5_K min terms use it), so the product is
// exactly the dequantized weights times the rounded x, up to float summation. The error per
// element is at most d/2 (2^-16 of the block's largest), the int16 grade of the CPU's decode
// GEMVs. The GEMVs then read each weight byte once, 16 bytes per lane where the block
// layout allows (Q4_K, Q5_K), and turn nibbles into dp2a operands with 32-bit masks: two to
// three integer instructions per weight byte, against seven float ones when every weight is
// decoded to float (gemv/kernel.cuh, which stays the path of the other types).
//
// One warp per RW rows (1, 2 or 4), KTX_Q16_WARPS warps per block; the block loops are unrolled
// so that each lane has two to four (Q8_0: four to eight) weight loads in flight. NT tokens
// per launch (1, 2, 4 or 8; tokens past n_tok are computed from the scratch's spare rows and
// not stored). Sums: per lane in block order, then a warp shuffle tree, the same for every RW
// (a row's result does not depend on how many rows its warp takes).
#pragma once

#include "common/pdl.cuh"
#include "common/quant.cuh"

#define KTX_Q16_WARPS 4
#define KTX_Q16_MAX_TOKENS 8

// x [n_tok][ld_x] -> q [n_tok][k] int16, s [n_tok][k / 32] = {d, d·Σq}. Grid (ceil(k / 256),
// n_tok), 256 threads: one warp per 32-element block (k is a multiple of 32).
extern "C" __global__ void __launch_bounds__(256)
    ktx_quantize_x16(const float* __restrict__ x, ktx_i64 ld_x, int k, short* __restrict__ q,
                     float2* __restrict__ s) {
  KTX_PDL_ENTER();
  const int t = blockIdx.y;
  const int i = blockIdx.x * 256 + threadIdx.x;
  if (i >= k) return;  // whole warps: k % 32 == 0
  const float v = x[t * ld_x + i];
  float a = fabsf(v);
  for (int o = 16; o > 0; o /= 2) a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, o));
  const float inv = a > 0.0f ? 32767.0f / a : 0.0f, d = a / 32767.0f;
  const int qi = __float2int_rn(v * inv);
  float sum = static_cast<float>(qi);  // integers below 2^24: exact in any order
  for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  q[static_cast<ktx_i64>(t) * k + i] = static_cast<short>(qi);
  if (i % 32 == 0) s[static_cast<ktx_i64>(t) * (k / 32) + i / 32] = make_float2(d, d * sum);
}

// Σ over 4 weights (bytes of w, signed) × 4 int16 activations (two pairs: lo = elements 0, 1).
__device__ __forceinline__ int ktx_dot4(int x01, int x23, int w, int acc) {
  return __dp2a_hi(x23, w, __dp2a_lo(x01, w, acc));
}
// 8 weights (two words) × 8 int16 activations (one int4).
__device__ __forceinline__ int ktx_dot8(const int4& x, int w0, int w1, int acc) {
  return ktx_dot4(x.z, x.w, w1, ktx_dot4(x.x, x.y, w0, acc));
}
// 4 bytes at a 2-byte aligned address.
__device__ __forceinline__ int ktx_load_i32_a2(const ktx_u8* p) {
  const ktx_u16* h = reinterpret_cast<const ktx_u16*>(p);
  return static_cast<int>(static_cast<unsigned>(h[0]) | (static_cast<unsigned>(h[1]) << 16));
}

struct Q16Args {
  const ktx_u8* w;
  ktx_i64 row_bytes;
  const short* q;    // [NT][k]
  const float2* s;   // [NT][k / 32]
  float* y;
  ktx_i64 ld_y;
  int n_rows, k, n_tok;
};

// Row r of the warp's RW rows: its weights, clamped to the last row (a warp past the end
// computes a copy of it and stores nothing).
__device__ __forceinline__ const ktx_u8* q16_row(const Q16Args& a, int row) {
  return a.w + static_cast<ktx_i64>(row < a.n_rows ? row : a.n_rows - 1) * a.row_bytes;
}
template <int NT, int RW, int KS = 1>
__device__ __forceinline__ void q16_store(const Q16Args& a, int row0, float (&acc)[RW][NT]) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int r = 0; r < RW; ++r) {
#pragma unroll
    for (int t = 0; t < NT; ++t)
      for (int o = 16; o > 0; o /= 2) acc[r][t] += __shfl_down_sync(0xffffffffu, acc[r][t], o);
  }
  if constexpr (KS > 1) {
    // Split k (KS == KTX_Q16_WARPS: the block's warps share its rows): warp 0 adds the KS
    // warps' sums in warp order.
    __shared__ float part[KTX_Q16_WARPS][RW][NT];
    const int warp = threadIdx.x / 32;
#pragma unroll
    for (int r = 0; r < RW; ++r) {
#pragma unroll
      for (int t = 0; t < NT; ++t)
        if (lane == 0) part[warp][r][t] = acc[r][t];
    }
    __syncthreads();
    if (warp != 0) return;
#pragma unroll
    for (int r = 0; r < RW; ++r) {
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        acc[r][t] = part[0][r][t];
        for (int w = 1; w < KS; ++w) acc[r][t] += part[w][r][t];
      }
    }
  }
#pragma unroll
  for (int r = 0; r < RW; ++r) {
#pragma unroll
    for (int t = 0; t < NT; ++t)
      if (lane == 0 && t < a.n_tok && row0 + r < a.n_rows) a.y[t * a.ld_y + row0 + r] = acc[r][t];
  }
}

// The 6-bit scales and mins of sub-blocks 2p and 2p + 1 of a Q4_K/Q5_K block from its 12
// scale bytes read as three words (w0 = bytes 0..3, w1 = 4..7, w2 = 8..11): for j < 4,
// sc = byte j & 63 and mn = byte j + 4 & 63; for j >= 4 the low (sc) and high (mn) nibble of
// byte j + 4 with the top two bits of bytes j - 4 and j (ktx_scale_min_k4).
__device__ __forceinline__ void q16_scale_min_pair(unsigned w0, unsigned w1, unsigned w2, int p,
                                                   int* sc0, int* mn0, int* sc1, int* mn1) {
  const int sh = 16 * (p & 1);  // bytes 2p, 2p + 1 (mod 4) of each word
  const unsigned b0 = w0 >> sh, b1 = w1 >> sh, b2 = w2 >> sh;
  if (p < 2) {
    *sc0 = b0 & 63;
    *mn0 = b1 & 63;
    *sc1 = (b0 >> 8) & 63;
    *mn1 = (b1 >> 8) & 63;
  } else {
    *sc0 = (b2 & 0x0F) | (((b0 >> 6) & 3) << 4);
    *mn0 = ((b2 >> 4) & 0x0F) | (((b1 >> 6) & 3) << 4);
    *sc1 = ((b2 >> 8) & 0x0F) | (((b0 >> 14) & 3) << 4);
    *mn1 = ((b2 >> 12) & 0x0F) | (((b1 >> 14) & 3) << 4);
  }
}

// Q4_K (144-byte super-blocks: d, dmin, scales[12], qs[128]) and Q5_K (176 bytes: the same with
// qh[32] before qs; the fifth bit of element l of sub-block j is bit j of qh[l]); both 16-byte
// aligned. 8 lanes per super-block, lane (p, h) takes qs bytes [32p + 16h, +16): low nibbles are
// elements 16h.. of sub-block 2p, high nibbles the same elements of sub-block 2p + 1. A warp
// step covers 4 super-blocks of each of its RW rows; the activations it loads serve all RW.
template <int NT, int RW, bool Q5, int KS>
__device__ __forceinline__ void gemv_k_q16(const Q16Args& a) {
  constexpr int kBytes = Q5 ? 176 : 144, kQs = Q5 ? 48 : 16;
  constexpr int kUnroll = RW >= 4 ? 1 : 2;  // weight loads in flight per lane: 2 .. 4 rows
  const int lane = threadIdx.x % 32;
  // KS warps per row group (split k): warp ks takes every KS-th step of the block loop.
  static_assert(KS == 1 || KS == KTX_Q16_WARPS, "split k over all of a block's warps");
  const int ks = (threadIdx.x / 32) % KS;
  const int row0 = ((blockIdx.x * KTX_Q16_WARPS + threadIdx.x / 32) / KS) * RW;
  if (row0 >= a.n_rows) return;  // every warp of a split-k block alike
  const int nb = a.k / 256, p = (lane % 8) / 2, h = lane % 2, n32 = a.k / 32;
  const ktx_u8* wr[RW];
#pragma unroll
  for (int r = 0; r < RW; ++r) wr[r] = q16_row(a, row0 + r);
  float acc[RW][NT];
#pragma unroll
  for (int r = 0; r < RW; ++r)
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;
#pragma unroll kUnroll
  for (int b = lane / 8 + 4 * ks; b < nb; b += 4 * KS) {
    int lo[RW][4], hi[RW][4];
    float ds0[RW], ds1[RW], dm0[RW], dm1[RW];
#pragma unroll
    for (int r = 0; r < RW; ++r) {
      const ktx_u8* blk = wr[r] + b * kBytes;
      const int4 qs = *reinterpret_cast<const int4*>(blk + kQs + 32 * p + 16 * h);
      const uint4 hd = *reinterpret_cast<const uint4*>(blk);  // d, dmin, scales[12]
      const float d = ktx_half(static_cast<ktx_u16>(hd.x & 0xFFFFu));
      const float dmin = ktx_half(static_cast<ktx_u16>(hd.x >> 16));
      int sc0, mn0, sc1, mn1;
      q16_scale_min_pair(hd.y, hd.z, hd.w, p, &sc0, &mn0, &sc1, &mn1);
      const int q[4] = {qs.x, qs.y, qs.z, qs.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        lo[r][i] = q[i] & 0x0F0F0F0F;
        hi[r][i] = (q[i] >> 4) & 0x0F0F0F0F;
      }
      if (Q5) {
        const int4 qh4 = *reinterpret_cast<const int4*>(blk + 16 + 16 * h);
        const int qh[4] = {qh4.x, qh4.y, qh4.z, qh4.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          lo[r][i] |= ((qh[i] >> (2 * p)) & 0x01010101) << 4;
          hi[r][i] |= ((qh[i] >> (2 * p + 1)) & 0x01010101) << 4;
        }
      }
      ds0[r] = d * static_cast<float>(sc0);
      ds1[r] = d * static_cast<float>(sc1);
      dm0[r] = h == 0 ? dmin * static_cast<float>(mn0) : 0.0f;
      dm1[r] = h == 0 ? dmin * static_cast<float>(mn1) : 0.0f;
    }
    const int e0 = b * 256 + 64 * p + 16 * h;  // sub-block 2p; 2p + 1 starts 32 later
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const int4* x0 = reinterpret_cast<const int4*>(a.q + static_cast<ktx_i64>(t) * a.k + e0);
      const int4* x1 = x0 + 4;  // 32 int16 later
      const int4 xa = x0[0], xb = x0[1], xc = x1[0], xd = x1[1];
      const float2 xs0 = a.s[t * n32 + e0 / 32], xs1 = a.s[t * n32 + e0 / 32 + 1];
#pragma unroll
      for (int r = 0; r < RW; ++r) {
        int s0 = ktx_dot8(xa, lo[r][0], lo[r][1], 0);
        s0 = ktx_dot8(xb, lo[r][2], lo[r][3], s0);
        int s1 = ktx_dot8(xc, hi[r][0], hi[r][1], 0);
        s1 = ktx_dot8(xd, hi[r][2], hi[r][3], s1);
        acc[r][t] += ds0[r] * xs0.x * static_cast<float>(s0) + ds1[r] * xs1.x * static_cast<float>(s1) -
                     (dm0[r] * xs0.y + dm1[r] * xs1.y);
      }
    }
  }
  q16_store<NT, RW, KS>(a, row0, acc);
}
template <int NT, int RW, int KS>
__device__ __forceinline__ void gemv_q4_k_q16(const Q16Args& a) { gemv_k_q16<NT, RW, false, KS>(a); }
template <int NT, int RW, int KS>
__device__ __forceinline__ void gemv_q5_k_q16(const Q16Args& a) { gemv_k_q16<NT, RW, true, KS>(a); }

// Q6_K (210-byte super-blocks, 2-byte aligned: ql[128], qh[64], scales[16], d): 8 lanes per
// super-block, lane (hh, m) takes elements 8m.. of the four 32-groups g of half hh: nibbles of
// ql[64hh + 8m ..] (g = 0 low, 2 high) and ql[64hh + 32 + 8m ..] (g = 1, 3), bits 2g of
// qh[32hh + 8m ..]. The 6-bit u becomes the signed byte u − 32 as (u + 0x60) ^ 0x80 per byte.
template <int NT, int RW, int KS>
__device__ __forceinline__ void gemv_q6_k_q16(const Q16Args& a) {
  constexpr int kUnroll = RW >= 4 ? 1 : 2;
  const int lane = threadIdx.x % 32;
  // KS warps per row group (split k): warp ks takes every KS-th step of the block loop.
  static_assert(KS == 1 || KS == KTX_Q16_WARPS, "split k over all of a block's warps");
  const int ks = (threadIdx.x / 32) % KS;
  const int row0 = ((blockIdx.x * KTX_Q16_WARPS + threadIdx.x / 32) / KS) * RW;
  if (row0 >= a.n_rows) return;  // every warp of a split-k block alike
  const int nb = a.k / 256, hh = (lane % 8) / 4, m = lane % 4, n32 = a.k / 32;
  const ktx_u8* wr[RW];
#pragma unroll
  for (int r = 0; r < RW; ++r) wr[r] = q16_row(a, row0 + r);
  float acc[RW][NT];
#pragma unroll
  for (int r = 0; r < RW; ++r)
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;
#pragma unroll kUnroll
  for (int b = lane / 8 + 4 * ks; b < nb; b += 4 * KS) {
    int wv[RW][4][2];
    float dsg[RW][4];
#pragma unroll
    for (int r = 0; r < RW; ++r) {
      const ktx_u8* blk = wr[r] + b * 210;
      const ktx_u8* ql = blk + 64 * hh + 8 * m;
      const ktx_u8* qh = blk + 128 + 32 * hh + 8 * m;
      const int a0 = ktx_load_i32_a2(ql), a1 = ktx_load_i32_a2(ql + 4);
      const int c0 = ktx_load_i32_a2(ql + 32), c1 = ktx_load_i32_a2(ql + 36);
      const int h0 = ktx_load_i32_a2(qh), h1 = ktx_load_i32_a2(qh + 4);
      const float d = ktx_half(*reinterpret_cast<const ktx_u16*>(blk + 208));
      const ktx_i8* sc = reinterpret_cast<const ktx_i8*>(blk + 192) + 8 * hh + m / 2;
      const int src[4][2] = {{a0, a1}, {c0, c1}, {a0 >> 4, a1 >> 4}, {c0 >> 4, c1 >> 4}};
#pragma unroll
      for (int g = 0; g < 4; ++g) {
        const int hs0 = ((h0 >> (2 * g)) & 0x03030303) << 4, hs1 = ((h1 >> (2 * g)) & 0x03030303) << 4;
        wv[r][g][0] = (((src[g][0] & 0x0F0F0F0F) | hs0) + 0x60606060) ^ static_cast<int>(0x80808080u);
        wv[r][g][1] = (((src[g][1] & 0x0F0F0F0F) | hs1) + 0x60606060) ^ static_cast<int>(0x80808080u);
        dsg[r][g] = d * static_cast<float>(sc[2 * g]);
      }
    }
    const int e0 = b * 256 + 128 * hh + 8 * m;  // group g at e0 + 32g
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const short* xq = a.q + static_cast<ktx_i64>(t) * a.k + e0;
      const float2* xs = a.s + t * n32 + (b * 8 + 4 * hh);
      int4 xg[4];
      float xd[4];
#pragma unroll
      for (int g = 0; g < 4; ++g) {
        xg[g] = *reinterpret_cast<const int4*>(xq + 32 * g);
        xd[g] = xs[g].x;
      }
#pragma unroll
      for (int r = 0; r < RW; ++r) {
        float v = 0.0f;
#pragma unroll
        for (int g = 0; g < 4; ++g)
          v += dsg[r][g] * xd[g] * static_cast<float>(ktx_dot8(xg[g], wv[r][g][0], wv[r][g][1], 0));
        acc[r][t] += v;
      }
    }
  }
  q16_store<NT, RW, KS>(a, row0, acc);
}

// Q8_0 (34-byte blocks, 2-byte aligned): 4 lanes per block, 8 bytes each; a warp step covers 8.
template <int NT, int RW, int KS>
__device__ __forceinline__ void gemv_q8_0_q16(const Q16Args& a) {
  constexpr int kUnroll = RW >= 4 ? 2 : 4;
  const int lane = threadIdx.x % 32;
  // KS warps per row group (split k): warp ks takes every KS-th step of the block loop.
  static_assert(KS == 1 || KS == KTX_Q16_WARPS, "split k over all of a block's warps");
  const int ks = (threadIdx.x / 32) % KS;
  const int row0 = ((blockIdx.x * KTX_Q16_WARPS + threadIdx.x / 32) / KS) * RW;
  if (row0 >= a.n_rows) return;  // every warp of a split-k block alike
  const int nb = a.k / 32, part = lane % 4;
  const ktx_u8* wr[RW];
#pragma unroll
  for (int r = 0; r < RW; ++r) wr[r] = q16_row(a, row0 + r);
  float acc[RW][NT];
#pragma unroll
  for (int r = 0; r < RW; ++r)
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;
#pragma unroll kUnroll
  for (int b = lane / 4 + 8 * ks; b < nb; b += 8 * KS) {
    int w0[RW], w1[RW];
    float d[RW];
#pragma unroll
    for (int r = 0; r < RW; ++r) {
      const ktx_u8* blk = wr[r] + b * 34;
      w0[r] = ktx_load_i32_a2(blk + 2 + 8 * part);
      w1[r] = ktx_load_i32_a2(blk + 6 + 8 * part);
      d[r] = ktx_half(*reinterpret_cast<const ktx_u16*>(blk));
    }
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const int4 x = *reinterpret_cast<const int4*>(a.q + static_cast<ktx_i64>(t) * a.k + 32 * b + 8 * part);
      const float xd = a.s[t * nb + b].x;
#pragma unroll
      for (int r = 0; r < RW; ++r) acc[r][t] += d[r] * xd * static_cast<float>(ktx_dot8(x, w0[r], w1[r], 0));
    }
  }
  q16_store<NT, RW, KS>(a, row0, acc);
}

#define KTX_Q16_ENTRY(NAME, FN, NT, RW, KS)                                                   \
  extern "C" __global__ void __launch_bounds__(32 * KTX_Q16_WARPS)                           \
      NAME(const ktx_u8* w, ktx_i64 row_bytes, const short* q, const float2* s, float* y,   \
           ktx_i64 ld_y, int n_rows, int k, int n_tok) {                                    \
    KTX_PDL_ENTER();                                                                        \
    const Q16Args a{w, row_bytes, q, s, y, ld_y, n_rows, k, n_tok};                          \
    FN<NT, RW, KS>(a);                                                                       \
  }
// ktx_gemv16_<type>_<tokens> (one row per warp) and _<tokens>_r2 / _r4 (2 and 4 rows per warp:
// the host picks them for tall matrices, where the activation loads they share would
// otherwise outnumber the weight bytes four to one), and _<tokens>_k4 (one row per block, its
// four warps splitting k: for short wide matrices such as q_a and kv_a_mqa, whose rows would
// otherwise leave most SMs idle while each warp walks k = 7168 in seven dependent steps).
#define KTX_Q16_TOKENS(TNAME, FN, NT)                        \
  KTX_Q16_ENTRY(ktx_gemv16_##TNAME##_##NT, FN, NT, 1, 1)       \
  KTX_Q16_ENTRY(ktx_gemv16_##TNAME##_##NT##_r2, FN, NT, 2, 1)  \
  KTX_Q16_ENTRY(ktx_gemv16_##TNAME##_##NT##_r4, FN, NT, 4, 1)  \
  KTX_Q16_ENTRY(ktx_gemv16_##TNAME##_##NT##_k4, FN, NT, 1, KTX_Q16_WARPS)
#define KTX_Q16_TYPE(TNAME, FN) \
  KTX_Q16_TOKENS(TNAME, FN, 1)  \
  KTX_Q16_TOKENS(TNAME, FN, 2)  \
  KTX_Q16_TOKENS(TNAME, FN, 4)  \
  KTX_Q16_TOKENS(TNAME, FN, 8)

KTX_Q16_TYPE(q4_k, gemv_q4_k_q16)
KTX_Q16_TYPE(q5_k, gemv_q5_k_q16)
KTX_Q16_TYPE(q6_k, gemv_q6_k_q16)
KTX_Q16_TYPE(q8_0, gemv_q8_0_q16)
