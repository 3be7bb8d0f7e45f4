// Token sampling on the GPU (runtime/engine/sampler.cpp's chain): NaN -> -inf, repetition
// penalty, greedy argmax (lowest id on ties), then top-k -> top-p -> min-p -> temperature ->
// one draw u in [0, 1). One thread block of 1024 threads for one logits row.
//
// The CPU sorts the candidates by (logit descending, id ascending). Every cut it makes keeps a
// prefix of that order (top-k: k elements; top-p: up to the first whose running probability
// reaches p, normalized over the top-k set; min-p: logits >= max + log(min_p); the draw: the
// first whose running probability exceeds u), so no sort is needed here: each cut is a radix
// select over a 64-bit order key (ordered float bits, then ~id), eight bits a pass, that finds
// the element where a running weight crosses a target. Counts are exact; probabilities are
// sums of exp(l - max) in 2^-45 fixed point (integer atomics, so the result does not depend on
// thread timing), which moves a cut only when p or u falls within ~1e-9 of a boundary of the
// CPU's double sums. Elements whose weight rounds to 0 (p < 2^-46 of the max's) are never
// drawn. The CPU draws u only when it samples (temperature > 0 and some logit finite); the
// kernel reads u from *u, or draws it itself from a device xoshiro256** state (rng_state
// non-null) exactly as common/util/rng.h does, advancing it only when it samples.
#pragma once

#include "common/pdl.cuh"

#define KTX_SAMPLE_THREADS 1024
#define KTX_SAMPLE_MAX_VOCAB 262144           // fixed-point sums stay below 2^63
#define KTX_SAMPLE_FIXED_ONE 35184372088832.0  // 2^45

typedef unsigned long long ktx_u64;

// Larger key = earlier in the sampler's order. -0 is keyed as +0 (the CPU compares them equal).
__device__ __forceinline__ ktx_u64 ktx_sample_key(float l, int id) {
  unsigned b = __float_as_uint(l == 0.0f ? 0.0f : l);
  b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return (static_cast<ktx_u64>(b) << 32) | static_cast<ktx_u64>(0xffffffffu - static_cast<unsigned>(id));
}

__device__ __forceinline__ ktx_u64 ktx_rotl64(ktx_u64 x, int k) { return (x << k) | (x >> (64 - k)); }

// xoshiro256** next_unit() (common/util/rng.h) on a state s[4].
__device__ double ktx_xoshiro_unit(ktx_u64* s) {
  const ktx_u64 result = ktx_rotl64(s[1] * 5, 7) * 9;
  const ktx_u64 t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = ktx_rotl64(s[3], 45);
  return static_cast<double>(result >> 11) * 0x1.0p-53;
}

// Shared state of one selection.
struct KtxSelect {
  unsigned count[256];
  ktx_u64 mass[256];
  ktx_u64 prefix, before;
  double target;
  int single, fallback;
  ktx_u64 found;
};

// The key of the first member, in order, at which the running weight reaches (>=, or > when
// `exceed`) the target: `goal` itself, or goal × the members' total when `relative`.
// Members: finite, key >= lo_key, logit >= min_l. Weights: 1 each (inv_temp == 0), else
// exp((l - max_l)·inv_temp) in fixed point; weights are kept in wbuf after the first pass, and
// zero-weight elements take no part. When no element crosses (u in the rounding slack above
// the last partial sum), the last member. All threads call it; all get the result.
__device__ ktx_u64 ktx_sample_select(const float* work, ktx_u64* wbuf, int n, ktx_u64 lo_key,
                                     double min_l, double max_l, double inv_temp, double goal,
                                     int relative, int exceed, KtxSelect& sh) {
  const int tid = threadIdx.x;
  if (tid == 0) {
    sh.prefix = 0;
    sh.before = 0;
    sh.single = 0;
    sh.fallback = 0;
  }
  int pass = 0;
  for (; pass < 8; ++pass) {
    const int shift = 56 - 8 * pass;
    if (tid < 256) {
      sh.count[tid] = 0;
      sh.mass[tid] = 0;
    }
    __syncthreads();
    const ktx_u64 prefix = sh.prefix;
    for (int i = tid; i < n; i += KTX_SAMPLE_THREADS) {
      const float l = work[i];
      const ktx_u64 key = ktx_sample_key(l, i);
      ktx_u64 w;
      if (pass == 0) {
        const bool member = l != -__int_as_float(0x7f800000) && key >= lo_key &&
                            static_cast<double>(l) >= min_l;
        w = !member ? 0ull
            : inv_temp == 0.0
                ? 1ull
                : __double2ull_rn(exp((static_cast<double>(l) - max_l) * inv_temp) * KTX_SAMPLE_FIXED_ONE);
        wbuf[i] = w;
      } else {
        w = wbuf[i];
        if ((key >> (shift + 8)) != (prefix >> (shift + 8))) continue;
      }
      if (w == 0) continue;
      const int bin = static_cast<int>((key >> shift) & 255u);
      atomicAdd(&sh.count[bin], 1u);
      atomicAdd(&sh.mass[bin], w);
    }
    __syncthreads();
    if (tid == 0) {
      if (pass == 0) {
        ktx_u64 total = 0;
        for (int b = 0; b < 256; ++b) total += sh.mass[b];
        sh.target = relative ? goal * static_cast<double>(total) : goal;
      }
      int chosen = -1;
      ktx_u64 cum = sh.before;
      if (!sh.fallback) {
        for (int b = 255; b >= 0; --b) {
          if (sh.count[b] == 0) continue;
          const double next = static_cast<double>(cum + sh.mass[b]);
          if (exceed ? next > sh.target : next >= sh.target) {
            chosen = b;
            break;
          }
          cum += sh.mass[b];
        }
        if (chosen < 0) sh.fallback = 1;  // only on the first pass: later ones refine a crossing bin
      }
      if (sh.fallback)  // the last member: the lowest key
        for (int b = 0; b < 256 && chosen < 0; ++b)
          if (sh.count[b] != 0) chosen = b;
      if (chosen < 0) chosen = 0;  // no member at all (callers make sure there is one)
      sh.before = cum;
      sh.prefix = prefix | (static_cast<ktx_u64>(chosen) << shift);
      sh.single = sh.count[chosen] == 1u;
    }
    __syncthreads();
    if (sh.single) break;
  }
  if (pass < 8) {  // one element left in the bucket: find it
    const int shift = 56 - 8 * pass;
    const ktx_u64 prefix = sh.prefix;
    for (int i = tid; i < n; i += KTX_SAMPLE_THREADS) {
      if (wbuf[i] == 0) continue;
      const ktx_u64 key = ktx_sample_key(work[i], i);
      if ((key >> shift) == (prefix >> shift)) sh.found = key;
    }
  } else if (tid == 0) {
    sh.found = sh.prefix;
  }
  __syncthreads();
  const ktx_u64 found = sh.found;
  __syncthreads();  // sh is reused by the next selection
  return found;
}

__device__ __forceinline__ bool ktx_sample_better(float a, int ai, float b, int bi) {
  return a != b ? a > b : ai < bi;
}

// logits[n_vocab] -> *token. recent[n_recent]: token ids the penalty applies to once each
// (entries outside [0, n_vocab), e.g. -1 for an empty slot, are ignored). work[n_vocab] floats
// and wbuf[n_vocab] u64 are scratch. temperature <= 0: greedy. top_k 0, top_p >= 1, min_p <= 0,
// repeat_penalty == 1 turn those steps off. u: the draw (read only when sampling), unless
// rng_state (4 u64) is given.
extern "C" __global__ void __launch_bounds__(KTX_SAMPLE_THREADS)
    ktx_sample(const float* logits, int n_vocab, const int* recent, int n_recent,
               float temperature, int top_k, float top_p, float min_p, float repeat_penalty,
               const double* u, ktx_u64* rng_state, float* work, ktx_u64* wbuf, int* token) {
  KTX_PDL_ENTER();
  __shared__ float best_l[KTX_SAMPLE_THREADS];
  __shared__ int best_i[KTX_SAMPLE_THREADS];
  __shared__ int finite_n[KTX_SAMPLE_THREADS];
  __shared__ KtxSelect sel;
  const int tid = threadIdx.x;
  const float neg_inf = -__int_as_float(0x7f800000);

  // 1. Candidates: NaN -> -inf, then the penalty on each listed id (same value from every
  // writer of an id, so repeats count once).
  for (int i = tid; i < n_vocab; i += KTX_SAMPLE_THREADS) {
    const float l = logits[i];
    work[i] = l != l ? neg_inf : l;
  }
  __syncthreads();
  if (repeat_penalty != 1.0f) {
    for (int j = tid; j < n_recent; j += KTX_SAMPLE_THREADS) {
      const int id = recent[j];
      if (id < 0 || id >= n_vocab) continue;
      float l = logits[id];
      if (l != l) l = neg_inf;
      work[id] = l > 0.0f ? l / repeat_penalty : l * repeat_penalty;
    }
  }
  __syncthreads();

  // 2. Argmax (lowest id on ties) and the number of finite candidates.
  float bl = neg_inf;
  int bi = 0x7fffffff, nf = 0;
  for (int i = tid; i < n_vocab; i += KTX_SAMPLE_THREADS) {
    const float l = work[i];
    if (ktx_sample_better(l, i, bl, bi)) {
      bl = l;
      bi = i;
    }
    nf += l != neg_inf;
  }
  best_l[tid] = bl;
  best_i[tid] = bi;
  finite_n[tid] = nf;
  __syncthreads();
  for (int o = KTX_SAMPLE_THREADS / 2; o > 0; o /= 2) {
    if (tid < o) {
      if (ktx_sample_better(best_l[tid + o], best_i[tid + o], best_l[tid], best_i[tid])) {
        best_l[tid] = best_l[tid + o];
        best_i[tid] = best_i[tid + o];
      }
      finite_n[tid] += finite_n[tid + o];
    }
    __syncthreads();
  }
  const float max_l = best_l[0];
  const int n_finite = finite_n[0];
  if (temperature <= 0.0f || max_l == neg_inf) {
    if (tid == 0) *token = best_i[0];
    return;
  }

  // 3. The cuts, each a prefix of the order: top-k by count, top-p by probability within
  // the top-k set, min-p by a logit threshold, then the draw.
  const double maxd = static_cast<double>(max_l);
  const double neg_infd = static_cast<double>(neg_inf);
  ktx_u64 lo = 0;
  if (top_k > 0 && top_k < n_finite)
    lo = ktx_sample_select(work, wbuf, n_vocab, 0, neg_infd, maxd, 0.0, static_cast<double>(top_k),
                           0, 0, sel);
  if (top_p < 1.0f)
    lo = ktx_sample_select(work, wbuf, n_vocab, lo, neg_infd, maxd, 1.0, static_cast<double>(top_p),
                           1, 0, sel);
  const double min_l = min_p > 0.0f ? maxd + log(static_cast<double>(min_p)) : neg_infd;
  __shared__ double draw;
  if (tid == 0) draw = rng_state ? ktx_xoshiro_unit(rng_state) : *u;
  __syncthreads();
  const ktx_u64 pick = ktx_sample_select(work, wbuf, n_vocab, lo, min_l, maxd,
                                         1.0 / static_cast<double>(temperature), draw, 1, 1, sel);
  if (tid == 0) *token = static_cast<int>(0xffffffffu - static_cast<unsigned>(pick & 0xffffffffull));
}

// Appends *token to a ring of the last `cap` accepted tokens (the penalty's window), *pos
// counting every append; one thread. Keeps the history on the device inside a graph.
extern "C" __global__ void ktx_sample_accept(int* ring, int cap, long long* pos, const int* token) {
  KTX_PDL_ENTER();
  if (threadIdx.x != 0 || cap <= 0) return;
  const long long p = *pos;
  ring[p % cap] = *token;
  *pos = p + 1;
}
