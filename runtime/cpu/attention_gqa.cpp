// Grouped-query attention on the flash driver (attention_flash.h). A work item is one KV head
// and a chunk of consecutive tokens: its rows are the group's query heads for each token of
// the chunk (token-major), so every K/V block is widened once for group x tokens query rows.
// Chunks hold about kItemRows rows: enough to reuse a block many times in prefill, small enough
// that a decode step with few KV heads still makes several items before any key split.
#include <algorithm>
#include <cstring>

#include "runtime/cpu/attention.h"
#include "runtime/cpu/attention_flash.h"

namespace ktx::cpu {
namespace attn {
namespace {

constexpr int64_t kItemRows = 32;

}  // namespace

void gqa_attention_with(const Kernels& kern, ThreadPool& pool, const GqaAttnDesc& d,
                        const float* q, int64_t q_stride, KvRows k_cache, KvRows v_cache,
                        int64_t n_past, int64_t n_tok, float* out) {
  if (n_tok <= 0) return;
  const int64_t group = d.n_head / d.n_head_kv, hdk = d.head_dim_k, hdv = d.head_dim_v;
  const int64_t nk = d.n_head_kv * hdk, nv = d.n_head_kv * hdv;
  const int64_t tq = std::clamp<int64_t>(kItemRows / group, 1, n_tok);  // tokens per item
  const int64_t n_chunks = (n_tok + tq - 1) / tq;
  auto chunk_tokens = [&](int64_t chunk) { return std::min(tq, n_tok - chunk * tq); };

  Problem p;
  p.kv = d.kv;
  p.dk = hdk;
  p.dv = hdv;
  p.scale = d.scale;
  p.n_items = n_chunks * d.n_head_kv;
  p.max_rows = tq * group;
  p.max_keys = n_past + n_tok;
  p.setup = [&](int64_t item, float* qs, int64_t q_ld, int64_t* last) {
    const int64_t chunk = item / d.n_head_kv, kvh = item % d.n_head_kv, t0 = chunk * tq;
    const int64_t nt = chunk_tokens(chunk);
    for (int64_t tt = 0; tt < nt; ++tt) {
      for (int64_t g = 0; g < group; ++g) {
        const int64_t r = tt * group + g;
        std::memcpy(qs + r * q_ld, q + (t0 + tt) * q_stride + (kvh * group + g) * hdk,
                    sizeof(float) * hdk);
        last[r] = n_past + t0 + tt;
      }
    }
    ItemSetup it;
    it.k[0] = {k_cache, nk, kvh * hdk, hdk, 0};
    it.v = {v_cache, nv, kvh * hdv, hdv, 0};
    it.rows = nt * group;
    return it;
  };
  p.out_row = [&](int64_t item, int64_t r) -> float* {
    const int64_t chunk = item / d.n_head_kv, kvh = item % d.n_head_kv;
    if (r >= chunk_tokens(chunk) * group) return nullptr;
    const int64_t t = chunk * tq + r / group, h = kvh * group + r % group;
    return out + (t * d.n_head + h) * hdv;
  };
  run_flash(pool, kern, p);
}

}  // namespace attn

void gqa_attention(ThreadPool& pool, const GqaAttnDesc& d, const float* q, int64_t q_stride,
                   KvRows k_cache, KvRows v_cache, int64_t n_past, int64_t n_tok, float* out) {
  if (const attn::Kernels* k = attn::best_kernels()) {
    attn::gqa_attention_with(*k, pool, d, q, q_stride, k_cache, v_cache, n_past, n_tok, out);
  } else {
    gqa_attention_ref(d, q, q_stride, k_cache, v_cache, n_past, n_tok, out);
  }
}

}  // namespace ktx::cpu
