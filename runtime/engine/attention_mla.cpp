// Multi-head latent attention (deepseek2), computed in the absorbed form: the cache holds the
// normalized latent c (kv_lora) and the roped shared key part k_pe per position; a head's
// score is q_nope·(W_k c) + q_pe·k_pe = (W_k^T q_nope)·c + q_pe·k_pe, and its output is
// W_v (sum_j p_j c_j). This is the same function as expanding k/v per head (what
// transformers does) with a cache of kv_lora + rope floats per position instead of
// n_head * (k + v). W_k/W_v come from attn_kv_b (rows per head: nope key rows, then v rows,
// each kv_lora long) or from the split attn_k_b [nope, kv_lora, n_head] (rows of W_k^T) and
// attn_v_b [kv_lora, v, n_head] (rows of W_v); the split form is used when both exist.
#include <algorithm>

#include "runtime/cpu/gemm_f32.h"
#include "runtime/engine/engine_internal.h"

namespace ktx {
namespace {

// q [T, n_head * (nope + rope)], rope part rotated.
void project_q(const StepCtx& s, const std::string& b, const float* h, float* q) {
  const ModelConfig& c = s.m.cfg;
  const int64_t T = s.n_tok, dq = c.qk_nope_dim + c.qk_rope_dim;
  if (c.q_lora_rank > 0) {
    float* qa = scratch(Scratch::mla_qa, T * c.q_lora_rank);  // [T, q_lora]
    std::vector<float> buf;
    linear(s, b + "attn_q_a.weight", h, qa);
    const float* norm = small_tensor(s.m.w(b + "attn_q_a_norm.weight"), buf);
    cpu::parallel_range(s.pool, T, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        rms_norm(qa + t * c.q_lora_rank, norm, qa + t * c.q_lora_rank, c.q_lora_rank, c.rms_eps);
    });
    linear(s, b + "attn_q_b.weight", qa, q);
  } else {
    linear(s, b + "attn_q.weight", h, q);
  }
  cpu::parallel_range(s.pool, T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      apply_rope_heads(s.m, q + t * c.n_head * dq + c.qk_nope_dim, c.n_head, dq, s.n_past + t);
  });
}

// Writes this call's latents and roped k_pe into the cache.
void project_kv(const StepCtx& s, const std::string& b, const float* h, LayerCache& cache) {
  const ModelConfig& c = s.m.cfg;
  const int64_t T = s.n_tok, kvl = c.kv_lora_rank, rope = c.qk_rope_dim;
  float* kv = scratch(Scratch::mla_kv, T * (kvl + rope));    // [T, kv_lora + rope]
  float* latent = scratch(Scratch::mla_latent, T * kvl);     // [T, kv_lora]
  float* k_pe = scratch(Scratch::mla_k_pe, T * rope);        // [T, rope]
  std::vector<float> buf;
  linear(s, b + "attn_kv_a_mqa.weight", h, kv);
  const float* norm = small_tensor(s.m.w(b + "attn_kv_a_norm.weight"), buf);
  cpu::parallel_range(s.pool, T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      rms_norm(kv + t * (kvl + rope), norm, latent + t * kvl, kvl, c.rms_eps);
      std::copy_n(kv + t * (kvl + rope) + kvl, rope, k_pe + t * rope);
      apply_rope(s.m, k_pe + t * rope, s.n_past + t);
    }
  });
  s.emit(b + "kv_latent", latent, kvl);
  s.emit(b + "k_pe", k_pe, rope);
  cache.store_k(s.n_past, latent, T);
  cache.store_v(s.n_past, k_pe, T);
}

bool use_split(const ModelConfig& c) { return c.mla_layout != MlaLayout::KvB; }

// q_abs [T, n_head * kv_lora] = W_k^T q_nope per head.
void absorb_q(const StepCtx& s, const std::string& b, const float* q, float* q_abs) {
  const ModelConfig& c = s.m.cfg;
  const int64_t T = s.n_tok, H = c.n_head, kvl = c.kv_lora_rank;
  const int64_t dq = c.qk_nope_dim + c.qk_rope_dim;
  if (use_split(c)) {
    linear_heads(s, b + "attn_k_b.weight", H, kvl, q, dq, H * dq, q_abs, kvl, H * kvl);
    return;
  }
  const Weight& kv_b = s.m.w(b + "attn_kv_b.weight");
  const int64_t rows_per_head = c.qk_nope_dim + c.v_head_dim;
  cpu::parallel_range(s.pool, H, 1, [&](int64_t begin, int64_t end) {
    for (int64_t hh = begin; hh < end; ++hh)
      matmul_transposed(kv_b, hh * rows_per_head, c.qk_nope_dim, q + hh * dq, H * dq, T,
                        q_abs + hh * kvl, H * kvl);
  });
}

// out [T, n_head * v] = W_v o_lat per head.
void expand_v(const StepCtx& s, const std::string& b, const float* o_lat, float* out) {
  const ModelConfig& c = s.m.cfg;
  const int64_t T = s.n_tok, H = c.n_head, kvl = c.kv_lora_rank, vd = c.v_head_dim;
  const bool split = use_split(c);
  const std::string wv = b + (split ? "attn_v_b.weight" : "attn_kv_b.weight");
  if (split) {
    linear_heads(s, wv, H, vd, o_lat, kvl, H * kvl, out, vd, H * vd);
    return;
  }
  for (int64_t hh = 0; hh < H; ++hh) {
    const int64_t row0 = split ? hh * vd : hh * (c.qk_nope_dim + vd) + c.qk_nope_dim;
    linear(s, wv, row0, vd, o_lat + hh * kvl, H * kvl, T, out + hh * vd, H * vd);
  }
}

// Prefill calls of at least this many tokens expand k/v per head (below) instead of absorbing.
constexpr int64_t kExpandMinTokens = 32;
// ... as long as the whole cache fits this many positions (the expanded k/v of a head group
// are n_kv x 16 x (192 + 128) floats).
constexpr int64_t kExpandMaxPositions = 16384;
constexpr int64_t kHeadGroup = 16;

// The non-absorbed form for prefill (DeepSeek's own prefill form): every cached latent is
// expanded into per-head keys [W_k c_j, k_pe_j] and values W_v c_j, then ordinary attention
// with head dims nope + rope and v. Per (token, head, key) that is (nope + rope) + v
// multiply-adds against the absorbed form's 2·kv_lora + rope (320 vs 1088 in DeepSeek-V3), and
// the expansion is a GEMM over the whole call. Heads go in groups of 16 to bound the expanded
// cache. out [T, n_head * v].
void attention_expanded(const StepCtx& s, const std::string& b, const float* q,
                        const LayerCache& cache, float* out) {
  const ModelConfig& c = s.m.cfg;
  const int64_t T = s.n_tok, H = c.n_head, kvl = c.kv_lora_rank, rope = c.qk_rope_dim;
  const int64_t nope = c.qk_nope_dim, vd = c.v_head_dim, dq = nope + rope;
  const int64_t n_kv = s.n_past + T;
  const cpu::KvRows lat_rows = cache.k(), kpe_rows = cache.v();
  float* lat = scratch(Scratch::mla_lat_f32, n_kv * kvl);  // [n_kv, kv_lora]
  float* kpe = scratch(Scratch::mla_kpe_f32, n_kv * rope);  // [n_kv, rope]
  cpu::parallel_range(s.pool, n_kv, 16, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      cpu::kv_load_row(cache.type, lat_rows.row(j, cache.k_rb), lat + j * kvl, kvl);
      cpu::kv_load_row(cache.type, kpe_rows.row(j, cache.v_rb), kpe + j * rope, rope);
    }
  });
  const int64_t G = std::min(H, kHeadGroup);
  float* kx = scratch(Scratch::mla_kx, n_kv * G * dq);  // [n_kv, G * (nope + rope)]
  float* vx = scratch(Scratch::mla_vx, n_kv * G * vd);  // [n_kv, G * v]
  float* og = scratch(Scratch::mla_og, T * G * vd);     // [T, G * v]
  const bool split = use_split(c);
  const std::string kv_b = b + "attn_kv_b.weight";
  for (int64_t g0 = 0; g0 < H; g0 += G) {
    const int64_t gh = std::min(G, H - g0);
    OpTimer t_x(s.profile, "attention/expand_kv");
    if (split) {
      linear(s, b + "attn_v_b.weight", g0 * vd, gh * vd, lat, kvl, n_kv, vx, gh * vd);
      // attn_k_b holds W_kᵀ (kv_lora rows of nope per head): keys = latents · W_kᵀ.
      const Weight& kb = s.m.w(b + "attn_k_b.weight");
      const int64_t chunk = 128, n_chunks = (n_kv + chunk - 1) / chunk;
      cpu::parallel_range(s.pool, gh * n_chunks, 1, [&](int64_t i0, int64_t i1) {
        int64_t loaded = -1;
        float* kbt = scratch(Scratch::mla_kbt, kvl * nope);
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t hh = i / n_chunks, j0 = (i % n_chunks) * chunk;
          if (loaded != hh) {
            for (int64_t l = 0; l < kvl; ++l) {
              const float* row = kb.row((g0 + hh) * kvl + l, kbt + l * nope);
              if (row != kbt + l * nope) std::copy_n(row, nope, kbt + l * nope);
            }
            loaded = hh;
          }
          cpu::gemm_f32_kn(lat + j0 * kvl, kvl, kbt, nope, kx + j0 * gh * dq + hh * dq, gh * dq,
                           std::min(chunk, n_kv - j0), nope, kvl);
        }
      });
    } else {
      const int64_t rows = nope + vd;
      for (int64_t hh = 0; hh < gh; ++hh) {
        linear(s, kv_b, (g0 + hh) * rows, nope, lat, kvl, n_kv, kx + hh * dq, gh * dq);
        linear(s, kv_b, (g0 + hh) * rows + nope, vd, lat, kvl, n_kv, vx + hh * vd, gh * vd);
      }
    }
    cpu::parallel_range(s.pool, n_kv, 64, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t hh = 0; hh < gh; ++hh)
          std::copy_n(kpe + j * rope, rope, kx + (j * gh + hh) * dq + nope);
    });
    t_x.stop();
    OpTimer t_core(s.profile, "attention/core");
    const cpu::GqaAttnDesc d{gh, gh, dq, vd, c.attn_scale, cpu::KvType::f32};
    cpu::gqa_attention(s.pool, d, q + g0 * dq, H * dq, kx, vx, s.n_past, T, og);
    cpu::parallel_range(s.pool, T, 16, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) std::copy_n(og + t * gh * vd, gh * vd, out + t * H * vd + g0 * vd);
    });
  }
}

}  // namespace

void attention_mla(const StepCtx& s, int64_t il, const float* h, LayerCache& cache, float* dst) {
  const ModelConfig& c = s.m.cfg;
  const std::string b = fmt::format("blk.{}.", il);
  const int64_t T = s.n_tok, H = c.n_head, kvl = c.kv_lora_rank, rope = c.qk_rope_dim;
  const int64_t dq = c.qk_nope_dim + rope;
  float* q = scratch(Scratch::mla_q, T * H * dq);            // [T, n_head * (nope + rope)]
  float* q_abs = scratch(Scratch::mla_q_abs, T * H * kvl);   // [T, n_head * kv_lora]
  float* o_lat = scratch(Scratch::mla_o_lat, T * H * kvl);   // [T, n_head * kv_lora]
  OpTimer t_q(s.profile, "attention/q");
  project_q(s, b, h, q);
  t_q.stop();
  s.emit(b + "q", q, H * dq);
  OpTimer t_kv(s.profile, "attention/kv");
  project_kv(s, b, h, cache);
  t_kv.stop();
  if (s.m.attn_fast[static_cast<size_t>(il)] && T >= kExpandMinTokens &&
      s.n_past + T <= kExpandMaxPositions) {
    float* out = scratch(Scratch::mla_out, T * H * c.v_head_dim);  // [T, n_head * v]
    attention_expanded(s, b, q, cache, out);
    s.emit(b + "kqv_out", out, H * c.v_head_dim);
    OpTimer t_out(s.profile, "attention/out");
    linear(s, b + "attn_output.weight", out, dst);  // [T, n_embd]
    return;
  }
  OpTimer t_absorb(s.profile, "attention/absorb");
  absorb_q(s, b, q, q_abs);
  t_absorb.stop();
  OpTimer t_core(s.profile, "attention/core");

  if (s.m.attn_fast[static_cast<size_t>(il)]) {
    const cpu::MlaAttnDesc d{H, kvl, rope, c.attn_scale, cache.type};
    cpu::mla_attention(s.pool, d, q_abs, q + c.qk_nope_dim, H * dq, dq, cache.k(), cache.v(),
                       s.n_past, T, o_lat);
  } else {
    // f32 rows, visited one run of consecutive positions (one cache block) at a time.
    const cpu::KvRows lr = cache.k(), pr = cache.v();
    cpu::parallel_range(s.pool, T * H, 1, [&](int64_t begin, int64_t end) {
      for (int64_t job = begin; job < end; ++job) {
        const int64_t t = job / H, hh = job % H, n_keys = s.n_past + t + 1;
        const float* qa = q_abs + (t * H + hh) * kvl;
        const float* qpe = q + (t * H + hh) * dq + c.qk_nope_dim;
        float* p = scratch(Scratch::attn_scores, n_keys);
        for (int64_t j0 = 0, run = 0; j0 < n_keys; j0 += run) {
          run = lr.run(j0, n_keys - j0);
          const auto* lat = reinterpret_cast<const float*>(lr.row(j0, cache.k_rb));
          const auto* kpe = reinterpret_cast<const float*>(pr.row(j0, cache.v_rb));
          for (int64_t j = 0; j < run; ++j)
            p[j0 + j] = (dot_f32(qa, lat + j * kvl, kvl) + dot_f32(qpe, kpe + j * rope, rope)) *
                        c.attn_scale;
        }
        cpu::softmax_inplace(p, n_keys);
        float* o = o_lat + (t * H + hh) * kvl;
        std::fill(o, o + kvl, 0.0f);
        for (int64_t j0 = 0, run = 0; j0 < n_keys; j0 += run) {
          run = lr.run(j0, n_keys - j0);
          const auto* lat = reinterpret_cast<const float*>(lr.row(j0, cache.k_rb));
          for (int64_t j = 0; j < run; ++j) {
            const float* cj = lat + j * kvl;
            const float pj = p[j0 + j];
            for (int64_t i = 0; i < kvl; ++i) o[i] += pj * cj[i];
          }
        }
      }
    });
  }
  t_core.stop();
  float* out = scratch(Scratch::mla_out, T * H * c.v_head_dim);  // [T, n_head * v]
  OpTimer t_expand(s.profile, "attention/expand");
  expand_v(s, b, o_lat, out);
  t_expand.stop();
  s.emit(b + "kqv_out", out, H * c.v_head_dim);
  OpTimer t_out(s.profile, "attention/out");
  linear(s, b + "attn_output.weight", out, dst);  // [T, n_embd]
}

}  // namespace ktx
