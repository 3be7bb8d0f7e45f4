// Grouped-query attention (qwen3moe, qwen2moe, llama/Mixtral) and the causal softmax-weighted
// sum shared with MLA. Keys and values are written to the cache before any query of the call
// reads them, and every query reads positions 0..its own, so a prefill of T tokens computes
// exactly what T single-token decode steps compute.
#include <algorithm>
#include <cmath>

#include "runtime/engine/engine_internal.h"

namespace ktx {

namespace {

// Projections, biases, per-head q/k norms and RoPE, in the order HF applies them.
void project_qkv(const StepCtx& s, const std::string& b, const float* h, float* q, float* k,
                 float* v) {
  const ModelConfig& c = s.m.cfg;
  const int64_t T = s.n_tok, hd = c.head_dim_k;
  const int64_t nq = c.n_head * hd, nk = c.n_head_kv * hd, nv = c.n_head_kv * c.head_dim_v;
  linear(s, b + "attn_q.weight", h, q);  // [T, nq]
  linear(s, b + "attn_k.weight", h, k);  // [T, nk]
  linear(s, b + "attn_v.weight", h, v);  // [T, nv]
  std::vector<float> buf;
  if (c.qkv_bias) {
    const struct { const char* name; float* x; int64_t n; } biases[] = {
        {"attn_q.bias", q, nq}, {"attn_k.bias", k, nk}, {"attn_v.bias", v, nv}};
    for (const auto& bi : biases) {
      const float* bias = small_tensor(s.m.w(b + bi.name), buf);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < bi.n; ++i) bi.x[t * bi.n + i] += bias[i];
    }
  }
  // Per token (independent, so split over the pool): q/k norms, then RoPE.
  std::vector<float> kbuf;
  const float* qn = c.qk_norm ? small_tensor(s.m.w(b + "attn_q_norm.weight"), buf) : nullptr;
  const float* kn = c.qk_norm ? small_tensor(s.m.w(b + "attn_k_norm.weight"), kbuf) : nullptr;
  cpu::parallel_range(s.pool, T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      if (c.qk_norm) {
        for (int64_t hh = 0; hh < c.n_head; ++hh)
          rms_norm(q + t * nq + hh * hd, qn, q + t * nq + hh * hd, hd, c.rms_eps);
        for (int64_t hh = 0; hh < c.n_head_kv; ++hh)
          rms_norm(k + t * nk + hh * hd, kn, k + t * nk + hh * hd, hd, c.rms_eps);
      }
      apply_rope_heads(s.m, q + t * nq, c.n_head, hd, s.n_past + t);
      apply_rope_heads(s.m, k + t * nk, c.n_head_kv, hd, s.n_past + t);
    }
  });
}

}  // namespace

void attention_gqa(const StepCtx& s, int64_t il, const float* h, LayerCache& cache, float* dst) {
  const ModelConfig& c = s.m.cfg;
  const std::string b = fmt::format("blk.{}.", il);
  const int64_t T = s.n_tok, hdk = c.head_dim_k, hdv = c.head_dim_v;
  const int64_t nq = c.n_head * hdk, nk = c.n_head_kv * hdk, nv = c.n_head_kv * hdv;
  float* q = scratch(Scratch::gqa_q, T * nq);  // [T, nq]
  float* k = scratch(Scratch::gqa_k, T * nk);  // [T, nk]
  float* v = scratch(Scratch::gqa_v, T * nv);  // [T, nv]
  OpTimer t_qkv(s.profile, "attention/qkv");
  project_qkv(s, b, h, q, k, v);
  t_qkv.stop();
  s.emit(b + "Qcur", q, nq);
  s.emit(b + "Kcur", k, nk);
  s.emit(b + "Vcur", v, nv);
  cache.store_k(s.n_past, k, T);
  cache.store_v(s.n_past, v, T);

  const int64_t group = c.n_head / c.n_head_kv;
  float* out = scratch(Scratch::gqa_out, T * c.n_head * hdv);  // [T, n_head * hdv]
  OpTimer t_core(s.profile, "attention/core");
  if (s.m.attn_fast[static_cast<size_t>(il)]) {
    const cpu::GqaAttnDesc d{c.n_head, c.n_head_kv, hdk, hdv, c.attn_scale, cache.type};
    cpu::gqa_attention(s.pool, d, q, nq, cache.k(), cache.v(), s.n_past, T, out);
  } else {
    // f32 rows, visited one run of consecutive positions (one cache block) at a time.
    const cpu::KvRows kr = cache.k(), vr = cache.v();
    cpu::parallel_range(s.pool, T * c.n_head, 1, [&](int64_t begin, int64_t end) {
      for (int64_t job = begin; job < end; ++job) {
        const int64_t t = job / c.n_head, hh = job % c.n_head, kvh = hh / group;
        const int64_t n_keys = s.n_past + t + 1;
        const float* qh = q + t * nq + hh * hdk;
        float* p = scratch(Scratch::attn_scores, n_keys);
        for (int64_t j0 = 0, run = 0; j0 < n_keys; j0 += run) {
          run = kr.run(j0, n_keys - j0);
          const auto* kc = reinterpret_cast<const float*>(kr.row(j0, cache.k_rb));
          for (int64_t j = 0; j < run; ++j)
            p[j0 + j] = dot_f32(qh, kc + j * nk + kvh * hdk, hdk) * c.attn_scale;
        }
        cpu::softmax_inplace(p, n_keys);
        float* o = out + t * c.n_head * hdv + hh * hdv;
        std::fill(o, o + hdv, 0.0f);
        for (int64_t j0 = 0, run = 0; j0 < n_keys; j0 += run) {
          run = vr.run(j0, n_keys - j0);
          const auto* vc = reinterpret_cast<const float*>(vr.row(j0, cache.v_rb));
          for (int64_t j = 0; j < run; ++j) {
            const float* vj = vc + j * nv + kvh * hdv;
            const float pj = p[j0 + j];
            for (int64_t i = 0; i < hdv; ++i) o[i] += pj * vj[i];
          }
        }
      }
    });
  }
  t_core.stop();
  s.emit(b + "kqv_out", out, c.n_head * hdv);
  OpTimer t_out(s.profile, "attention/out");
  linear(s, b + "attn_output.weight", out, dst);  // [T, n_embd]
}

}  // namespace ktx
