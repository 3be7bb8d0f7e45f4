// Absorbed multi-head latent attention on the flash driver (attention_flash.h). All heads read
// the same cache: a K row is the latent c_j followed by k_pe_j (so q_abs·c + q_pe·kpe is one dot
// product over kv_lora + rope), and the V row is the same widened c_j, never widened twice.
// A work item is a group of up to kGroupHeads heads for a few tokens; the per-block work is a
// small GEMM of (heads x tokens) rows against the block's keys, then P·C for all those rows.
// At decode (one token, 4 items for DeepSeek-V3's 128 heads) the driver splits the keys.
#include <algorithm>
#include <cstring>

#include "runtime/cpu/attention.h"
#include "runtime/cpu/attention_flash.h"

namespace ktx::cpu {
namespace attn {
namespace {

constexpr int64_t kGroupHeads = 32;  // O of 32 rows x 512 floats = 64 KiB stays in L2
constexpr int64_t kItemRows = 32;

}  // namespace

void mla_attention_with(const Kernels& kern, ThreadPool& pool, const MlaAttnDesc& d,
                        const float* q_abs, const float* q_pe, int64_t q_pe_stride,
                        int64_t q_pe_head_stride, KvRows latent, KvRows k_pe, int64_t n_past,
                        int64_t n_tok, float* o_lat) {
  if (n_tok <= 0) return;
  const int64_t kvl = d.kv_lora, rope = d.rope, H = d.n_head;
  const int64_t hg = std::min(H, kGroupHeads), n_groups = (H + hg - 1) / hg;
  const int64_t tq = std::clamp<int64_t>(kItemRows / hg, 1, n_tok);  // tokens per item
  const int64_t n_chunks = (n_tok + tq - 1) / tq;
  struct Span { int64_t t0, nt, h0, nh; };
  auto span = [&](int64_t item) {
    const int64_t chunk = item / n_groups, grp = item % n_groups;
    return Span{chunk * tq, std::min(tq, n_tok - chunk * tq), grp * hg, std::min(hg, H - grp * hg)};
  };

  Problem p;
  p.kv = d.kv;
  p.dk = kvl + rope;
  p.dv = kvl;
  p.scale = d.scale;
  p.n_items = n_chunks * n_groups;
  p.max_rows = tq * hg;
  p.max_keys = n_past + n_tok;
  p.setup = [&](int64_t item, float* qs, int64_t q_ld, int64_t* last) {
    const Span s = span(item);
    for (int64_t tt = 0; tt < s.nt; ++tt) {
      const int64_t t = s.t0 + tt;
      for (int64_t hh = 0; hh < s.nh; ++hh) {
        const int64_t r = tt * s.nh + hh, h = s.h0 + hh;
        std::memcpy(qs + r * q_ld, q_abs + (t * H + h) * kvl, sizeof(float) * kvl);
        std::memcpy(qs + r * q_ld + kvl, q_pe + t * q_pe_stride + h * q_pe_head_stride,
                    sizeof(float) * rope);
        last[r] = n_past + t;
      }
    }
    ItemSetup it;
    it.k[0] = {latent, kvl, 0, kvl, 0};
    it.k[1] = {k_pe, rope, 0, rope, kvl};
    it.n_k = 2;
    it.v_in_k = true;
    it.rows = s.nt * s.nh;
    return it;
  };
  p.out_row = [&](int64_t item, int64_t r) -> float* {
    const Span s = span(item);
    if (r >= s.nt * s.nh) return nullptr;
    return o_lat + ((s.t0 + r / s.nh) * H + s.h0 + r % s.nh) * kvl;
  };
  run_flash(pool, kern, p);
}

}  // namespace attn

void mla_attention(ThreadPool& pool, const MlaAttnDesc& d, const float* q_abs, const float* q_pe,
                   int64_t q_pe_stride, int64_t q_pe_head_stride, KvRows latent, KvRows k_pe,
                   int64_t n_past, int64_t n_tok, float* o_lat) {
  if (const attn::Kernels* k = attn::best_kernels()) {
    attn::mla_attention_with(*k, pool, d, q_abs, q_pe, q_pe_stride, q_pe_head_stride, latent,
                             k_pe, n_past, n_tok, o_lat);
  } else {
    mla_attention_ref(d, q_abs, q_pe, q_pe_stride, q_pe_head_stride, latent, k_pe, n_past,
                      n_tok, o_lat);
  }
}

}  // namespace ktx::cpu
