// The attention layers on the GPU (runtime/cuda/attention.h), step for step the CPU engine's
// attention_gqa (runtime/engine/attention.cpp) and attention_mla (attention_mla.cpp, absorbed
// form), and the workspace they share.
//
// Each call first writes every token's keys and values to the cache (projections in chunks of
// kGemvMaxTokens tokens), then runs the queries in chunks of ws.chunk tokens: projections,
// core, output projection. Query t attends to rows 0 .. *d_pos + t, all written by then, so a
// prefill of T tokens computes what T decode steps compute (as on the CPU).
//
// Mixtral / llama GGUFs store attn_q / attn_k rows permuted for the normal (interleaved) RoPE;
// the CPU engine reads them as they are with RopeStyle::Normal, and so does this code.
#include <fmt/format.h>

#include <algorithm>

#include "runtime/cuda/attention.h"

namespace ktx::cuda {
namespace {

constexpr int64_t kTok = kGemvMaxTokens;

// The tensor, checked to be row_len x n_rows (an absent tensor is the lookup's error).
Expected<DevTensor> need(const TensorLookup& tensors, const std::string& name, int64_t row_len,
                         int64_t n_rows) {
  KTX_ASSIGN_OR_RETURN(DevTensor t, tensors(name));
  if (t.row_len != row_len || t.n_rows != n_rows)
    return Error("cuda attention: tensor '{}' is {} x {}, expected {} x {}", name, t.row_len,
                 t.n_rows, row_len, n_rows);
  return t;
}
// A norm weight or bias: F32 of n elements.
Expected<const float*> need_f32(const TensorLookup& tensors, const std::string& name, int64_t n) {
  KTX_ASSIGN_OR_RETURN(DevTensor t, need(tensors, name, n, 1));
  if (t.type != GGMLType::F32)
    return Error("cuda attention: tensor '{}' is {}; norm weights and biases are uploaded as F32",
                 name, ggml_type_name(static_cast<uint32_t>(t.type)));
  return static_cast<const float*>(t.data);
}

// y [n_tok][ld_y] = x [n_tok][ld_x] · Wᵀ (Kernels::linear: the GEMM for prefill chunks, else
// GEMVs of kGemvMaxTokens tokens, integer ones on the workspace's rounded x where they fit).
Status linear(const Kernels& k, const DevTensor& w, const float* x, int64_t ld_x, float* y,
              int64_t ld_y, int64_t n_tok, cudaStream_t stream, XQuant* xq) {
  return k.linear(w.type, w.data, w.row_bytes, x, ld_x, y, ld_y, w.n_rows, w.row_len, n_tok,
                  stream, xq);
}

struct Sizes {  // floats of each workspace buffer
  int64_t q = 0, k = 0, v = 0, heads_out = 0, qa = 0, kv = 0, latent = 0, q_abs = 0, o_lat = 0, part = 0;
};

GqaCoreDesc gqa_desc(const ModelConfig& c) {
  return {c.n_head, c.n_head_kv, c.head_dim_k, c.head_dim_v, c.attn_scale};
}
MlaCoreDesc mla_desc(const ModelConfig& c) {
  return {c.n_head, c.kv_lora_rank, c.qk_rope_dim, c.attn_scale};
}

Sizes sizes(const ModelConfig& c, int64_t chunk, int64_t n_ctx) {
  Sizes s;
  if (c.attn == AttnKind::GQA) {
    s.q = chunk * c.n_head * c.head_dim_k;
    s.k = kTok * c.n_head_kv * c.head_dim_k;
    s.v = kTok * c.n_head_kv * c.head_dim_v;
    s.heads_out = chunk * c.n_head * c.head_dim_v;
    for (int64_t nt = 1; nt <= chunk; ++nt)
      s.part = std::max(s.part, flash_partial_floats(gqa_splits(gqa_desc(c), nt, n_ctx), nt,
                                                     c.n_head, c.head_dim_v));
    return s;
  }
  const int64_t H = c.n_head, kvl = c.kv_lora_rank;
  s.q = chunk * H * (c.qk_nope_dim + c.qk_rope_dim);
  s.qa = kTok * c.q_lora_rank;
  s.kv = kTok * (kvl + c.qk_rope_dim);
  s.latent = kTok * kvl;
  s.q_abs = s.o_lat = chunk * H * kvl;
  s.heads_out = chunk * H * c.v_head_dim;
  for (int64_t nt = 1; nt <= chunk; ++nt)
    s.part = std::max(s.part, flash_partial_floats(mla_splits(mla_desc(c), nt, n_ctx), nt, H, kvl));
  return s;
}

int64_t padded(int64_t floats) { return (floats * 4 + 255) / 256 * 256; }  // bytes, 256-aligned

}  // namespace

// The widest input of the layer's projections (hidden state, q_lora latent, heads' output).
int64_t xq_cap(const ModelConfig& c) {
  const int64_t w = std::max({c.n_embd, c.q_lora_rank, c.n_head * c.head_dim_v,
                              c.n_head * c.v_head_dim});
  return (w + 31) / 32 * 32;
}

int64_t AttnWorkspace::bytes_for(const ModelConfig& cfg, int64_t max_tokens, int64_t n_ctx) {
  const Sizes s = sizes(cfg, std::clamp<int64_t>(max_tokens, 1, kAttnChunk), n_ctx);
  return padded(s.q) + padded(s.k) + padded(s.v) + padded(s.heads_out) + padded(s.qa) +
         padded(s.kv) + padded(s.latent) + padded(s.q_abs) + padded(s.o_lat) + padded(s.part) +
         XQuant::bytes_for(xq_cap(cfg));
}

Expected<AttnWorkspace> AttnWorkspace::create(const ModelConfig& cfg, int64_t max_tokens,
                                              int64_t n_ctx) {
  if (max_tokens <= 0 || n_ctx <= 0)
    return Error("cuda attention workspace: max_tokens = {}, n_ctx = {} must be > 0", max_tokens, n_ctx);
  AttnWorkspace ws;
  ws.kind = cfg.attn;
  ws.n_ctx = n_ctx;
  ws.max_tokens = max_tokens;
  ws.chunk = std::min(max_tokens, kAttnChunk);
  const Sizes s = sizes(cfg, ws.chunk, n_ctx);
  KTX_ASSIGN_OR_RETURN(ws.buf_, DeviceBuffer::alloc(static_cast<size_t>(
                                    bytes_for(cfg, max_tokens, n_ctx) - XQuant::bytes_for(xq_cap(cfg)))));
  auto* base = static_cast<uint8_t*>(ws.buf_.get());
  int64_t off = 0;
  auto take = [&](int64_t floats) {
    float* p = floats > 0 ? reinterpret_cast<float*>(base + off) : nullptr;
    off += padded(floats);
    return p;
  };
  ws.q = take(s.q);
  ws.k = take(s.k);
  ws.v = take(s.v);
  ws.heads_out = take(s.heads_out);
  ws.qa = take(s.qa);
  ws.kv = take(s.kv);
  ws.latent = take(s.latent);
  ws.q_abs = take(s.q_abs);
  ws.o_lat = take(s.o_lat);
  ws.part = {take(s.part), s.part};
  KTX_ASSIGN_OR_RETURN(ws.xq, XQuant::alloc(xq_cap(cfg)));
  return ws;
}

Status gqa_attention_layer(const Kernels& kern, const AttnKernels& attn, const ModelConfig& c,
                           int64_t layer, const TensorLookup& tensors, const float* d_inv_freq,
                           const float* h, float* out, void* k_cache, void* v_cache,
                           const int32_t* d_pos, int64_t n_tok, AttnWorkspace& ws,
                           cudaStream_t stream) {
  if (c.attn != AttnKind::GQA || ws.kind != AttnKind::GQA)
    return Error("cuda gqa_attention_layer: the model's attention or the workspace is MLA");
  const std::string b = fmt::format("blk.{}.", layer);
  const int64_t E = c.n_embd, hd = c.head_dim_k;
  const int64_t nq = c.n_head * hd, nk = c.n_head_kv * hd, nv = c.n_head_kv * c.head_dim_v;
  const int64_t no = c.n_head * c.head_dim_v;
  KTX_ASSIGN_OR_RETURN(DevTensor wq, need(tensors, b + "attn_q.weight", E, nq));
  KTX_ASSIGN_OR_RETURN(DevTensor wk, need(tensors, b + "attn_k.weight", E, nk));
  KTX_ASSIGN_OR_RETURN(DevTensor wv, need(tensors, b + "attn_v.weight", E, nv));
  KTX_ASSIGN_OR_RETURN(DevTensor wo, need(tensors, b + "attn_output.weight", no, E));
  const float *bq = nullptr, *bk = nullptr, *bv = nullptr, *qn = nullptr, *kn = nullptr;
  if (c.qkv_bias) {
    KTX_ASSIGN_OR_RETURN(bq, need_f32(tensors, b + "attn_q.bias", nq));
    KTX_ASSIGN_OR_RETURN(bk, need_f32(tensors, b + "attn_k.bias", nk));
    KTX_ASSIGN_OR_RETURN(bv, need_f32(tensors, b + "attn_v.bias", nv));
  }
  if (c.qk_norm) {
    KTX_ASSIGN_OR_RETURN(qn, need_f32(tensors, b + "attn_q_norm.weight", hd));
    KTX_ASSIGN_OR_RETURN(kn, need_f32(tensors, b + "attn_k_norm.weight", hd));
  }
  // A call of at most kTok tokens rounds h once for the k, v and q projections.
  XQuant* xq = ws.gemv_xq();
  const bool h_once = xq && !ws.unfused && n_tok <= kTok && E <= xq->k_cap() &&
                      Kernels::gemv16_fits(wq.type, wq.data, wq.row_bytes) &&
                      Kernels::gemv16_fits(wk.type, wk.data, wk.row_bytes) &&
                      Kernels::gemv16_fits(wv.type, wv.data, wv.row_bytes);
  // 1. keys and values of every token: projection, bias, per-head norm, RoPE (k), cache rows.
  for (int64_t t0 = 0; t0 < n_tok; t0 += kTok) {
    const int64_t nt = std::min(kTok, n_tok - t0);
    if (h_once) {
      KTX_RETURN_IF_ERROR(kern.quantize_x(h, E, E, nt, *xq, stream));
      KTX_RETURN_IF_ERROR(kern.gemv16(wk.type, wk.data, wk.row_bytes, *xq, ws.k, nk, nk, E, nt, stream));
      KTX_RETURN_IF_ERROR(kern.gemv16(wv.type, wv.data, wv.row_bytes, *xq, ws.v, nv, nv, E, nt, stream));
    } else {
      KTX_RETURN_IF_ERROR(linear(kern, wk, h + t0 * E, E, ws.k, nk, nt, stream, xq));  // [nt, nk]
      KTX_RETURN_IF_ERROR(linear(kern, wv, h + t0 * E, E, ws.v, nv, nt, stream, xq));  // [nt, nv]
    }
    if (attn.has_head_norm_rope() && !ws.unfused) {  // bias, norm, rope and both stores
      KTX_RETURN_IF_ERROR(attn.head_norm_rope(ws.k, nk, c.n_head_kv, hd, bk, kn, c.rms_eps,
                                              c.n_rot, c.rope_style, d_inv_freq, d_pos, t0, nt,
                                              k_cache, ws.n_ctx,
                                              {ws.v, nv, c.head_dim_v, bv, v_cache}, stream));
      continue;
    }
    if (c.qkv_bias) {
      KTX_RETURN_IF_ERROR(attn.add_bias(ws.k, nk, bk, nk, nt, stream));
      KTX_RETURN_IF_ERROR(attn.add_bias(ws.v, nv, bv, nv, nt, stream));
    }
    if (c.qk_norm)
      KTX_RETURN_IF_ERROR(kern.rms_norm(ws.k, hd, kn, ws.k, hd, nt * c.n_head_kv, hd, c.rms_eps, stream));
    KTX_RETURN_IF_ERROR(attn.rope(ws.k, nk, c.n_head_kv, hd, 0, c.n_rot, c.rope_style, d_inv_freq,
                                  d_pos, t0, nt, stream));
    KTX_RETURN_IF_ERROR(attn.kv_store(ws.k, nk, nk, k_cache, nk, ws.n_ctx, d_pos, t0, nt, stream));
    KTX_RETURN_IF_ERROR(attn.kv_store(ws.v, nv, nv, v_cache, nv, ws.n_ctx, d_pos, t0, nt, stream));
  }
  // 2. queries a chunk at a time: projection, bias, norm, RoPE, core, output projection.
  for (int64_t q0 = 0; q0 < n_tok; q0 += ws.chunk) {
    const int64_t nt = std::min(ws.chunk, n_tok - q0);
    if (h_once)  // xq still holds h (nothing between rounds into it)
      KTX_RETURN_IF_ERROR(kern.gemv16(wq.type, wq.data, wq.row_bytes, *xq, ws.q, nq, nq, E, nt, stream));
    else
      KTX_RETURN_IF_ERROR(linear(kern, wq, h + q0 * E, E, ws.q, nq, nt, stream, xq));  // [nt, nq]
    if (attn.has_head_norm_rope() && !ws.unfused) {
      KTX_RETURN_IF_ERROR(attn.head_norm_rope(ws.q, nq, c.n_head, hd, bq, qn, c.rms_eps, c.n_rot,
                                              c.rope_style, d_inv_freq, d_pos, q0, nt, nullptr,
                                              0, {}, stream));
    } else {
      if (c.qkv_bias) KTX_RETURN_IF_ERROR(attn.add_bias(ws.q, nq, bq, nq, nt, stream));
      if (c.qk_norm)
        KTX_RETURN_IF_ERROR(kern.rms_norm(ws.q, hd, qn, ws.q, hd, nt * c.n_head, hd, c.rms_eps, stream));
      KTX_RETURN_IF_ERROR(attn.rope(ws.q, nq, c.n_head, hd, 0, c.n_rot, c.rope_style, d_inv_freq,
                                    d_pos, q0, nt, stream));
    }
    KTX_RETURN_IF_ERROR(attn.gqa(gqa_desc(c), ws.q, nq, k_cache, v_cache, ws.n_ctx, d_pos, q0, nt,
                                 ws.heads_out, no, ws.part, stream));  // [nt, no]
    KTX_RETURN_IF_ERROR(linear(kern, wo, ws.heads_out, no, out + q0 * E, E, nt, stream, xq));
  }
  return Status::ok();
}

Status mla_attention_layer(const Kernels& kern, const AttnKernels& attn, const ModelConfig& c,
                           int64_t layer, const TensorLookup& tensors, const float* d_inv_freq,
                           const float* h, float* out, void* k_cache, void* v_cache,
                           const int32_t* d_pos, int64_t n_tok, AttnWorkspace& ws,
                           cudaStream_t stream) {
  if (c.attn != AttnKind::MLA || ws.kind != AttnKind::MLA)
    return Error("cuda mla_attention_layer: the model's attention or the workspace is GQA");
  const std::string b = fmt::format("blk.{}.", layer);
  const int64_t E = c.n_embd, H = c.n_head, kvl = c.kv_lora_rank, rope = c.qk_rope_dim;
  const int64_t nope = c.qk_nope_dim, vd = c.v_head_dim, dq = nope + rope, ql = c.q_lora_rank;
  const bool split = c.mla_layout != MlaLayout::KvB;  // as the engine: split when present
  DevTensor wqa, wqb, wq, kb, vb, kvb;
  const float* qa_norm = nullptr;
  if (ql > 0) {
    KTX_ASSIGN_OR_RETURN(wqa, need(tensors, b + "attn_q_a.weight", E, ql));
    KTX_ASSIGN_OR_RETURN(qa_norm, need_f32(tensors, b + "attn_q_a_norm.weight", ql));
    KTX_ASSIGN_OR_RETURN(wqb, need(tensors, b + "attn_q_b.weight", ql, H * dq));
  } else {
    KTX_ASSIGN_OR_RETURN(wq, need(tensors, b + "attn_q.weight", E, H * dq));
  }
  KTX_ASSIGN_OR_RETURN(DevTensor wkva, need(tensors, b + "attn_kv_a_mqa.weight", E, kvl + rope));
  KTX_ASSIGN_OR_RETURN(const float* kva_norm, need_f32(tensors, b + "attn_kv_a_norm.weight", kvl));
  if (split) {
    KTX_ASSIGN_OR_RETURN(kb, need(tensors, b + "attn_k_b.weight", nope, kvl * H));
    KTX_ASSIGN_OR_RETURN(vb, need(tensors, b + "attn_v_b.weight", kvl, vd * H));
  } else {
    KTX_ASSIGN_OR_RETURN(kvb, need(tensors, b + "attn_kv_b.weight", kvl, H * (nope + vd)));
  }
  KTX_ASSIGN_OR_RETURN(DevTensor wo, need(tensors, b + "attn_output.weight", H * vd, E));
  // A call of at most kTok tokens rounds h once for kv_a_mqa and q_a (integer GEMVs of both).
  XQuant* xq = ws.gemv_xq();
  const bool h_once = xq && !ws.unfused && n_tok <= kTok && ql > 0 && E <= xq->k_cap() &&
                      Kernels::gemv16_fits(wkva.type, wkva.data, wkva.row_bytes) &&
                      Kernels::gemv16_fits(wqa.type, wqa.data, wqa.row_bytes);
  // 1. latents and roped k_pe of every token into the caches.
  for (int64_t t0 = 0; t0 < n_tok; t0 += kTok) {
    const int64_t nt = std::min(kTok, n_tok - t0);
    if (h_once) {
      KTX_RETURN_IF_ERROR(kern.quantize_x(h, E, E, nt, *xq, stream));
      KTX_RETURN_IF_ERROR(kern.gemv16(wkva.type, wkva.data, wkva.row_bytes, *xq, ws.kv, kvl + rope,
                                      wkva.n_rows, E, nt, stream));
    } else {
      KTX_RETURN_IF_ERROR(linear(kern, wkva, h + t0 * E, E, ws.kv, kvl + rope, nt, stream, xq));  // [nt, kvl + rope]
    }
    if (attn.has_mla_kv_store() && !ws.unfused) {
      KTX_RETURN_IF_ERROR(attn.mla_kv_store(ws.kv, kvl + rope, kvl, rope, kva_norm, c.rms_eps,
                                            c.rope_style, d_inv_freq, k_cache, v_cache, ws.n_ctx,
                                            d_pos, t0, nt, stream));
      continue;
    }
    KTX_RETURN_IF_ERROR(kern.rms_norm(ws.kv, kvl + rope, kva_norm, ws.latent, kvl, nt, kvl,
                                      c.rms_eps, stream));  // [nt, kvl]
    KTX_RETURN_IF_ERROR(attn.rope(ws.kv + kvl, kvl + rope, 1, rope, 0, rope, c.rope_style,
                                  d_inv_freq, d_pos, t0, nt, stream));
    KTX_RETURN_IF_ERROR(attn.kv_store(ws.latent, kvl, kvl, k_cache, kvl, ws.n_ctx, d_pos, t0, nt, stream));
    KTX_RETURN_IF_ERROR(attn.kv_store(ws.kv + kvl, kvl + rope, rope, v_cache, rope, ws.n_ctx, d_pos,
                                      t0, nt, stream));
  }
  // 2. queries a chunk at a time.
  for (int64_t q0 = 0; q0 < n_tok; q0 += ws.chunk) {
    const int64_t nt = std::min(ws.chunk, n_tok - q0);
    for (int64_t t0 = 0; t0 < nt; t0 += kTok) {  // q [nt, H * dq], then q_abs [nt, H * kvl]
      const int64_t n8 = std::min(kTok, nt - t0);
      const float* x = h + (q0 + t0) * E;
      float* q = ws.q + t0 * H * dq;
      if (ql > 0) {
        if (h_once)  // xq still holds h (nothing between rounds into it)
          KTX_RETURN_IF_ERROR(kern.gemv16(wqa.type, wqa.data, wqa.row_bytes, *xq, ws.qa, ql,
                                          wqa.n_rows, E, n8, stream));
        else
          KTX_RETURN_IF_ERROR(linear(kern, wqa, x, E, ws.qa, ql, n8, stream, xq));  // [n8, ql]
        KTX_RETURN_IF_ERROR(kern.rms_norm(ws.qa, ql, qa_norm, ws.qa, ql, n8, ql, c.rms_eps, stream));
        KTX_RETURN_IF_ERROR(linear(kern, wqb, ws.qa, ql, q, H * dq, n8, stream, ws.gemv_xq()));
      } else {
        KTX_RETURN_IF_ERROR(linear(kern, wq, x, E, q, H * dq, n8, stream, ws.gemv_xq()));
      }
      KTX_RETURN_IF_ERROR(attn.rope(q, H * dq, H, dq, nope, rope, c.rope_style, d_inv_freq, d_pos,
                                    q0 + t0, n8, stream));
      float* qabs = ws.q_abs + t0 * H * kvl;
      if (split) {
        KTX_RETURN_IF_ERROR(attn.gemv_heads(kb.type, kb.data, kvl * kb.row_bytes, kb.row_bytes, q,
                                            H * dq, dq, qabs, H * kvl, kvl, H, kvl, nope, n8, stream));
      } else {
        KTX_RETURN_IF_ERROR(attn.gemv_t_heads(kvb.type, kvb.data, (nope + vd) * kvb.row_bytes,
                                              kvb.row_bytes, q, H * dq, dq, qabs, H * kvl, kvl, H,
                                              nope, kvl, n8, stream));
      }
    }
    KTX_RETURN_IF_ERROR(attn.mla(mla_desc(c), ws.q_abs, H * kvl, ws.q + nope, H * dq, dq, k_cache,
                                 v_cache, ws.n_ctx, d_pos, q0, nt, ws.o_lat, H * kvl, ws.part,
                                 stream));  // [nt, H * kvl]
    for (int64_t t0 = 0; t0 < nt; t0 += kTok) {  // heads_out [nt, H * vd] = W_v o_lat per head
      const int64_t n8 = std::min(kTok, nt - t0);
      const float* ol = ws.o_lat + t0 * H * kvl;
      float* ho = ws.heads_out + t0 * H * vd;
      if (split) {
        KTX_RETURN_IF_ERROR(attn.gemv_heads(vb.type, vb.data, vd * vb.row_bytes, vb.row_bytes, ol,
                                            H * kvl, kvl, ho, H * vd, vd, H, vd, kvl, n8, stream));
      } else {
        const void* v_rows = static_cast<const uint8_t*>(kvb.data) + nope * kvb.row_bytes;
        KTX_RETURN_IF_ERROR(attn.gemv_heads(kvb.type, v_rows, (nope + vd) * kvb.row_bytes,
                                            kvb.row_bytes, ol, H * kvl, kvl, ho, H * vd, vd, H, vd,
                                            kvl, n8, stream));
      }
    }
    KTX_RETURN_IF_ERROR(linear(kern, wo, ws.heads_out, H * vd, out + q0 * E, E, nt, stream, ws.gemv_xq()));
  }
  return Status::ok();
}

}  // namespace ktx::cuda
