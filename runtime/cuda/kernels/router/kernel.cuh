// MoE router selection (runtime/engine/router.cpp's route_token on the GPU) and Qwen2-MoE's
// shared-expert gate. One thread block per token; every score in double with the CPU's
// operations in the CPU's order (the softmax sum runs sequentially in thread 0), so the
// experts chosen agree with the CPU's wherever the two exp() agree (CUDA's double exp is
// within 1 ulp; glibc's too): crafted ties and float near-ties decide identically.
//
// Steps: score (softmax / sigmoid / raw logits for softmax-after-top-k) -> choice = score +
// exp_probs_b -> group mask (group score: top-two sum or max; experts of dropped groups get
// choice 0, as transformers does) -> top-k by rank (ties to the lower index, as the CPU's
// stable sort) -> weights from the unbiased scores (renormalized, scaled) in thread 0.
// NaN choice scores count as -inf (the CPU's sort has no defined order for them).
#pragma once

#include "common/pdl.cuh"

#define KTX_ROUTER_THREADS 256
#define KTX_ROUTER_MAX_EXPERTS 512
#define KTX_ROUTER_MAX_TOP_K 16
#define KTX_ROUTER_MAX_GROUPS 16

// Score functions (RouterScore in runtime/cuda/router.h).
#define KTX_ROUTE_SOFTMAX 0
#define KTX_ROUTE_SIGMOID 1
#define KTX_ROUTE_LOGITS 2  // Mixtral: choose on logits, softmax over the chosen

#define KTX_ROUTER_INF __longlong_as_double(0x7ff0000000000000ll)

extern "C" __global__ void __launch_bounds__(KTX_ROUTER_THREADS)
    ktx_route(const float* logits, long long ld_logits, const float* bias, int n_expert,
              int top_k, int score_fn, int n_groups, int n_groups_used, int group_top2,
              int norm, float scale, int* ids, float* weights) {
  KTX_PDL_ENTER();
  __shared__ double score[KTX_ROUTER_MAX_EXPERTS];
  __shared__ double choice[KTX_ROUTER_MAX_EXPERTS];
  __shared__ float fmax_part[KTX_ROUTER_THREADS];
  __shared__ double softmax_sum;
  __shared__ double group_score[KTX_ROUTER_MAX_GROUPS];
  __shared__ int group_keep[KTX_ROUTER_MAX_GROUPS];
  __shared__ int chosen[KTX_ROUTER_MAX_TOP_K];
  __shared__ float chosen_w[KTX_ROUTER_MAX_TOP_K];
  const float* l = logits + blockIdx.x * ld_logits;
  const int tid = threadIdx.x;

  // 1. Scores.
  if (score_fn == KTX_ROUTE_SOFTMAX) {
    float m = -__int_as_float(0x7f800000);
    for (int e = tid; e < n_expert; e += KTX_ROUTER_THREADS) m = fmaxf(m, l[e]);
    fmax_part[tid] = m;
    __syncthreads();
    for (int o = KTX_ROUTER_THREADS / 2; o > 0; o /= 2) {
      if (tid < o) fmax_part[tid] = fmaxf(fmax_part[tid], fmax_part[tid + o]);
      __syncthreads();
    }
    const double mx = static_cast<double>(fmax_part[0]);
    for (int e = tid; e < n_expert; e += KTX_ROUTER_THREADS)
      score[e] = exp(static_cast<double>(l[e]) - mx);
    __syncthreads();
    if (tid == 0) {  // the CPU's order: e = 0, 1, ...
      double s = 0.0;
      for (int e = 0; e < n_expert; ++e) s += score[e];
      softmax_sum = s;
    }
    __syncthreads();
    for (int e = tid; e < n_expert; e += KTX_ROUTER_THREADS) score[e] /= softmax_sum;
  } else if (score_fn == KTX_ROUTE_SIGMOID) {
    for (int e = tid; e < n_expert; e += KTX_ROUTER_THREADS)
      score[e] = 1.0 / (1.0 + exp(-static_cast<double>(l[e])));
  } else {
    for (int e = tid; e < n_expert; e += KTX_ROUTER_THREADS) score[e] = static_cast<double>(l[e]);
  }
  __syncthreads();

  // 2. Choice scores: biased for selection only.
  for (int e = tid; e < n_expert; e += KTX_ROUTER_THREADS) {
    double c = score[e];
    if (bias) c += static_cast<double>(bias[e]);
    choice[e] = c != c ? -KTX_ROUTER_INF : c;
  }
  __syncthreads();

  // 3. Expert groups: the best n_groups_used groups compete, the others' experts score 0.
  if (n_groups > 1) {
    const int per_group = n_expert / n_groups;
    if (tid < n_groups) {
      double m0 = -KTX_ROUTER_INF, m1 = -KTX_ROUTER_INF;  // the two first of the sorted members
      for (int j = tid * per_group; j < (tid + 1) * per_group; ++j) {
        const double v = choice[j];
        if (v > m0) {
          m1 = m0;
          m0 = v;
        } else if (v > m1) {
          m1 = v;
        }
      }
      group_score[tid] = group_top2 ? m0 + (per_group > 1 ? m1 : 0.0) : m0;
    }
    __syncthreads();
    if (tid < n_groups) {
      const double v = group_score[tid];
      int rank = 0;
      for (int g = 0; g < n_groups; ++g) {
        const double w = group_score[g];
        rank += (w > v || (w == v && g < tid)) ? 1 : 0;
      }
      group_keep[tid] = rank < n_groups_used;
    }
    __syncthreads();
    for (int e = tid; e < n_expert; e += KTX_ROUTER_THREADS)
      if (!group_keep[e / per_group]) choice[e] = 0.0;
    __syncthreads();
  }

  // 4. Top-k: an expert's rank is the number of experts before it in (choice descending,
  // index ascending) order; ranks are a permutation, so each slot has one writer.
  for (int e = tid; e < n_expert; e += KTX_ROUTER_THREADS) {
    const double v = choice[e];
    int rank = 0;
    for (int j = 0; j < n_expert; ++j) {
      const double w = choice[j];
      rank += (w > v || (w == v && j < e)) ? 1 : 0;
    }
    if (rank < top_k) chosen[rank] = e;
  }
  __syncthreads();

  // 5. Weights from the unbiased scores, in the CPU's order.
  if (tid == 0) {
    double w[KTX_ROUTER_MAX_TOP_K];
    if (score_fn == KTX_ROUTE_LOGITS) {
      const double mx = score[chosen[0]];
      double sum = 0.0;
      for (int i = 0; i < top_k; ++i) sum += w[i] = exp(score[chosen[i]] - mx);
      for (int i = 0; i < top_k; ++i) w[i] /= sum;
    } else {
      for (int i = 0; i < top_k; ++i) w[i] = score[chosen[i]];
      if (norm) {
        double sum = 0.0;
        for (int i = 0; i < top_k; ++i) sum += w[i];
        for (int i = 0; i < top_k; ++i) w[i] /= sum + 1e-20;
      }
    }
    for (int i = 0; i < top_k; ++i)
      chosen_w[i] = static_cast<float>(w[i] * static_cast<double>(scale));
  }
  __syncthreads();
  if (tid < top_k) {
    ids[blockIdx.x * top_k + tid] = chosen[tid];
    weights[blockIdx.x * top_k + tid] = chosen_w[tid];
  }
}

// Qwen2-MoE: out[t][i] *= sigmoid(gate[t]) for i < n, gate[t] = ffn_gate_inp_shexp · h[t]
// (a 1-row GEMV before this). Grid: (ceil(n / 256), n_tok).
extern "C" __global__ void ktx_shexp_gate(const float* gate, float* out, long long ld_out, int n) {
  KTX_PDL_ENTER();
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float g = 1.0f / (1.0f + expf(-gate[blockIdx.y]));
  out[blockIdx.y * ld_out + i] *= g;
}
