// Causal attention over an f16 KV cache, flash style (online softmax over key tiles), for
// decode and prefill: GQA (ktx_flash_gqa_*) and MLA in the absorbed form (ktx_flash_mla_*),
// one template. Query t of a call sees cache rows 0 .. *d_pos + t_base + t.
//
// Grid: x = key split (a fixed count chosen on the host from n_ctx and the shape, so a CUDA
// graph captured for n_tok holds at any position; each split takes a KT-aligned share of the
// runtime length), y = KV head · head chunk, z = token block. A block holds up to R query rows
// (the query heads of one KV head's group, times tokens), so every key tile it reads from the
// cache serves all those rows: GQA groups of 1..16 heads read the cache once per group; MLA's
// heads all share the latent cache, R of them per block.
//
// Per key tile of KT rows:
//   1. K tile -> shared (f16 pairs, rows padded to an odd word count: conflict-free)
//   2. scores s[r][j] = (q_r · k_j) · scale, -inf where j is past row r's position or the split
//   3. (GQA) V tile -> the same shared buffer;  online softmax per row (one warp per row):
//      m' = max(m, max_j s), p_j = exp(s_j - m'), alpha = exp(m - m'), l = l·alpha + Σ p_j
//   4. o[r][:] = alpha·o[r][:] + Σ_j p_j v_j (a thread owns fixed (row, column pair) slots)
// With one split the block writes o / l; with several it writes o, m and l and
// ktx_flash_combine merges the splits: o = Σ_s e^(m_s - M) o_s / Σ_s e^(m_s - M) l_s.
#pragma once

#include "common/pdl.cuh"
#include "common/quant.cuh"
#include "flash_attn/params.cuh"

#define KTX_FLASH_THREADS 128
#define KTX_FLASH_GQA_ROWS 16  // query rows per block (GQA): groups up to 16
#define KTX_FLASH_GQA_KT 32    // keys per tile (GQA)
#define KTX_FLASH_MLA_ROWS 8   // query rows per block (MLA)
#define KTX_FLASH_MLA_KT 16    // keys per tile (MLA: 576-wide rows)
#define KTX_FLASH_COMBINE_THREADS 128
#define KTX_FLASH_NEG_INF (__int_as_float(0xff800000u))  // no math.h under NVRTC

__device__ __forceinline__ float ktx_flash_lo(unsigned w) { return ktx_half(static_cast<ktx_u16>(w & 0xFFFFu)); }
__device__ __forceinline__ float ktx_flash_hi(unsigned w) { return ktx_half(static_cast<ktx_u16>(w >> 16)); }

// Cache rows [kt0, kt0 + KT) of WORDS 32-bit words each (word(row, w)) into shared rows
// STRIDE words apart, rows at or past ke as zeros. Every load of the thread is issued before
// its first store, so they are in flight together (a loop that stores each load before the
// next waits a memory latency per element: most of a short call's time).
template <int NT, int KT, int WORDS, int STRIDE, typename F>
__device__ __forceinline__ void flash_tile_load(unsigned* dst, int tid, long long kt0, int ke,
                                                const F& word) {
  constexpr int N = (KT * WORDS + NT - 1) / NT;
  unsigned v[N];
#pragma unroll
  for (int u = 0; u < N; ++u) {
    const int i = tid + u * NT;
    const long long jg = kt0 + i / WORDS;
    v[u] = i < KT * WORDS && jg < ke ? word(jg, i % WORDS) : 0u;
  }
#pragma unroll
  for (int u = 0; u < N; ++u) {
    const int i = tid + u * NT;
    if (i < KT * WORDS) dst[(i / WORDS) * STRIDE + i % WORDS] = v[u];
  }
}

template <int D1, int D2, int DV, int R, int KT, bool V_IN_K>
__device__ void flash_attn_block(const KtxFlashParams& p) {
  constexpr int NT = KTX_FLASH_THREADS, NW = NT / 32;
  constexpr int DK = D1 + D2;
  constexpr int QS = DK + 1;                  // floats per query row in shared (pad: banks)
  constexpr int KS = DK / 2 + 1;              // words per key row in shared
  constexpr int VS = V_IN_K ? KS : DV / 2 + 1;
  constexpr int TW = KT * (KS > VS ? KS : VS);
  constexpr int NP = R * (DV / 2) / NT;       // (row, column pair) slots per thread
  static_assert(D1 % 2 == 0 && D2 % 2 == 0 && DV % 2 == 0, "f16 pairs");
  static_assert(KS % 2 == 1 && (V_IN_K || VS % 2 == 1), "odd row stride in words");
  static_assert(KT <= 32 && 32 % KT == 0, "a warp covers whole tiles of keys");
  static_assert(R * (DV / 2) % NT == 0, "column-pair slots split evenly over threads");
  static_assert(!V_IN_K || DV <= D1, "values are the head of the key row");
  __shared__ float q_s[R * QS];
  __shared__ unsigned kv_s[TW];
  __shared__ float s_s[R][KT];
  __shared__ float m_s[R], l_s[R], a_s[R];

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int HB = p.heads_per_block;
  const int chunks = (p.group + HB - 1) / HB;
  const int kvh = blockIdx.y / chunks, hc = blockIdx.y % chunks;
  const int t0 = blockIdx.z * p.toks_per_block;
  const int n_tt = min(p.toks_per_block, p.n_tok - t0);
  const int pos0 = *p.d_pos + p.t_base;
  const int kend = min(pos0 + t0 + n_tt, p.n_ctx);  // keys the block's last token sees
  int chunk = (kend + p.n_split - 1) / p.n_split;
  chunk = (chunk + KT - 1) / KT * KT;
  const int ks = blockIdx.x * chunk, ke = min(ks + chunk, kend);

  // Row r: token t0 + r / HB, group member hc·HB + r % HB; valid when both exist.
  auto row_ok = [&](int r) {
    return r < HB * p.toks_per_block && r / HB < n_tt && hc * HB + r % HB < p.group;
  };
  auto row_head = [&](int r) { return kvh * p.group + hc * HB + r % HB; };

  // The queries as the tiles below: all of the thread's loads first, then its stores.
  constexpr int QN = (R * DK + NT - 1) / NT;
  {
    float qv[QN];
#pragma unroll
    for (int u = 0; u < QN; ++u) {
      const int i = tid + u * NT, r = i / DK, d = i % DK;
      qv[u] = 0.0f;
      if (i < R * DK && row_ok(r)) {
        const long long t = t0 + r / HB, h = row_head(r);
        qv[u] = d < D1 ? p.q1[t * p.q1_tok + h * p.q1_head + d]
                       : p.q2[t * p.q2_tok + h * p.q2_head + (d - D1)];
      }
    }
#pragma unroll
    for (int u = 0; u < QN; ++u) {
      const int i = tid + u * NT;
      if (i < R * DK) q_s[(i / DK) * QS + i % DK] = qv[u];
    }
  }
  for (int r = tid; r < R; r += NT) {
    m_s[r] = KTX_FLASH_NEG_INF;
    l_s[r] = 0.0f;
  }
  float2 acc[NP];
#pragma unroll
  for (int k = 0; k < NP; ++k) acc[k] = make_float2(0.0f, 0.0f);

  for (int kt0 = ks; kt0 < ke; kt0 += KT) {
    __syncthreads();  // the previous tile's readers are done
    // 1. key tile (rows past the split's end read as zero: p = 0 must not meet a NaN)
    flash_tile_load<NT, KT, DK / 2, KS>(kv_s, tid, kt0, ke, [&](long long jg, int w) {
      return w < D1 / 2
                 ? reinterpret_cast<const unsigned*>(p.k1 + jg * p.k1_row + kvh * p.k1_head)[w]
                 : reinterpret_cast<const unsigned*>(p.k2 + jg * p.k2_row + kvh * p.k2_head)[w - D1 / 2];
    });
    __syncthreads();
    // 2. scores
    for (int i = tid; i < R * KT; i += NT) {
      const int r = i / KT, j = i % KT, jg = kt0 + j;
      float s = KTX_FLASH_NEG_INF;
      if (row_ok(r) && jg < ke && jg <= pos0 + t0 + r / HB) {
        const float* qr = q_s + r * QS;
        const unsigned* kr = kv_s + j * KS;
        // Four partial sums (words w mod 4): four independent FMA chains instead of one of DK.
        static_assert(DK % 8 == 0, "key width in whole groups of four words");
        float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;
#pragma unroll 4
        for (int w = 0; w < DK / 2; w += 4) {
          const unsigned k0 = kr[w], k1 = kr[w + 1], k2 = kr[w + 2], k3 = kr[w + 3];
          d0 = fmaf(qr[2 * w + 1], ktx_flash_hi(k0), fmaf(qr[2 * w], ktx_flash_lo(k0), d0));
          d1 = fmaf(qr[2 * w + 3], ktx_flash_hi(k1), fmaf(qr[2 * w + 2], ktx_flash_lo(k1), d1));
          d2 = fmaf(qr[2 * w + 5], ktx_flash_hi(k2), fmaf(qr[2 * w + 4], ktx_flash_lo(k2), d2));
          d3 = fmaf(qr[2 * w + 7], ktx_flash_hi(k3), fmaf(qr[2 * w + 6], ktx_flash_lo(k3), d3));
        }
        s = ((d0 + d1) + (d2 + d3)) * p.scale;
      }
      s_s[r][j] = s;
    }
    __syncthreads();
    // 3. value tile (GQA) and the online softmax
    if (!V_IN_K) {
      flash_tile_load<NT, KT, DV / 2, VS>(kv_s, tid, kt0, ke, [&](long long jg, int w) {
        return reinterpret_cast<const unsigned*>(p.v + jg * p.v_row + kvh * p.v_head)[w];
      });
    }
    for (int r = warp; r < R; r += NW) {
      const float s = lane < KT ? s_s[r][lane] : KTX_FLASH_NEG_INF;
      const float m_old = m_s[r];
      float mx = s;
      for (int o = 16; o > 0; o /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      const float m_new = fmaxf(m_old, mx);
      float e = 0.0f, alpha = 1.0f;
      if (m_new != KTX_FLASH_NEG_INF) {
        e = s == KTX_FLASH_NEG_INF ? 0.0f : expf(s - m_new);
        alpha = expf(m_old - m_new);
      }
      float sum = e;
      for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      __syncwarp();
      if (lane < KT) s_s[r][lane] = e;
      if (lane == 0) {
        m_s[r] = m_new;
        l_s[r] = l_s[r] * alpha + sum;
        a_s[r] = alpha;
      }
    }
    __syncthreads();
    // 4. weighted values (unrolled: acc stays in registers)
#pragma unroll
    for (int k = 0; k < NP; ++k) {
      const int idx = tid + k * NT, r = idx / (DV / 2), c = idx % (DV / 2);
      const float a = a_s[r];
      float2 o = make_float2(acc[k].x * a, acc[k].y * a);
      for (int j = 0; j < KT; ++j) {
        const float pj = s_s[r][j];
        const unsigned vw = kv_s[j * VS + c];
        o.x = fmaf(pj, ktx_flash_lo(vw), o.x);
        o.y = fmaf(pj, ktx_flash_hi(vw), o.y);
      }
      acc[k] = o;
    }
  }
  __syncthreads();
#pragma unroll
  for (int k = 0; k < NP; ++k) {
    const int idx = tid + k * NT, r = idx / (DV / 2), c = idx % (DV / 2);
    if (!row_ok(r)) continue;
    const long long t = t0 + r / HB, h = row_head(r);
    if (p.n_split == 1) {
      const float inv = 1.0f / l_s[r];
      float* o = p.out + t * p.out_tok + h * p.out_head + 2 * c;
      o[0] = acc[k].x * inv;
      o[1] = acc[k].y * inv;
    } else {
      float* o = p.part_o + ((blockIdx.x * static_cast<long long>(p.n_tok) + t) * p.n_head + h) * DV + 2 * c;
      o[0] = acc[k].x;
      o[1] = acc[k].y;
    }
  }
  if (p.n_split > 1) {
    for (int r = tid; r < R; r += NT) {
      if (!row_ok(r)) continue;
      const long long t = t0 + r / HB, h = row_head(r);
      float* ml = p.part_ml + ((blockIdx.x * static_cast<long long>(p.n_tok) + t) * p.n_head + h) * 2;
      ml[0] = m_s[r];
      ml[1] = l_s[r];
    }
  }
}

// GQA: head dims (k, v); rows = KV group x tokens.
#define KTX_FLASH_GQA_ENTRY(NAME, DK, DV)                                                   \
  extern "C" __global__ void __launch_bounds__(KTX_FLASH_THREADS) NAME(KtxFlashParams p) { \
    KTX_PDL_ENTER();                                                                       \
    flash_attn_block<DK, 0, DV, KTX_FLASH_GQA_ROWS, KTX_FLASH_GQA_KT, false>(p);             \
  }
// MLA: latent (kv_lora) and rope widths; values are the latents.
#define KTX_FLASH_MLA_ENTRY(NAME, KVL, ROPE)                                                  \
  extern "C" __global__ void __launch_bounds__(KTX_FLASH_THREADS) NAME(KtxFlashParams p) {   \
    KTX_PDL_ENTER();                                                                         \
    flash_attn_block<KVL, ROPE, KVL, KTX_FLASH_MLA_ROWS, KTX_FLASH_MLA_KT, true>(p);           \
  }

KTX_FLASH_GQA_ENTRY(ktx_flash_gqa_k64_v64, 64, 64)
KTX_FLASH_GQA_ENTRY(ktx_flash_gqa_k128_v128, 128, 128)
KTX_FLASH_GQA_ENTRY(ktx_flash_gqa_k192_v128, 192, 128)
KTX_FLASH_GQA_ENTRY(ktx_flash_gqa_k192_v192, 192, 192)
KTX_FLASH_GQA_ENTRY(ktx_flash_gqa_k256_v256, 256, 256)
KTX_FLASH_MLA_ENTRY(ktx_flash_mla_l512_r64, 512, 64)
KTX_FLASH_MLA_ENTRY(ktx_flash_mla_l512_r16, 512, 16)
KTX_FLASH_MLA_ENTRY(ktx_flash_mla_l64_r64, 64, 64)
KTX_FLASH_MLA_ENTRY(ktx_flash_mla_l64_r16, 64, 16)
KTX_FLASH_MLA_ENTRY(ktx_flash_mla_l128_r32, 128, 32)  // the shipped tiny DeepSeek-V3 files

// Merges the splits of ktx_flash_*: one block per (head, token), threads over the dv columns.
extern "C" __global__ void __launch_bounds__(KTX_FLASH_COMBINE_THREADS)
    ktx_flash_combine(const float* part_o,   // [n_split][n_tok][n_head][dv]
                      const float* part_ml,  // [n_split][n_tok][n_head][2]
                      float* out,            // token t, head h at out + t·out_tok + h·out_head
                      long long out_tok, long long out_head,
                      int n_tok, int n_head, int dv, int n_split) {
  KTX_PDL_ENTER();
  const int h = blockIdx.x, t = blockIdx.y;
  float m = KTX_FLASH_NEG_INF;
  for (int s = 0; s < n_split; ++s) m = fmaxf(m, part_ml[((static_cast<long long>(s) * n_tok + t) * n_head + h) * 2]);
  float l = 0.0f;
  for (int s = 0; s < n_split; ++s) {
    const float* ml = part_ml + ((static_cast<long long>(s) * n_tok + t) * n_head + h) * 2;
    if (ml[0] != KTX_FLASH_NEG_INF) l += expf(ml[0] - m) * ml[1];
  }
  const float inv = 1.0f / l;
  for (int c = threadIdx.x; c < dv; c += KTX_FLASH_COMBINE_THREADS) {
    float o = 0.0f;
    for (int s = 0; s < n_split; ++s) {
      const long long row = (static_cast<long long>(s) * n_tok + t) * n_head + h;
      const float ms = part_ml[row * 2];
      if (ms != KTX_FLASH_NEG_INF) o = fmaf(expf(ms - m), part_o[row * dv + c], o);
    }
    out[t * out_tok + h * out_head + c] = o * inv;
  }
}
