// The flash-attention driver shared by GQA and MLA (see attention_flash.h), and the choice of
// block kernels for this CPU. Scratch lives in thread_local buffers that only grow, so a
// decode step allocates nothing after the first call.
#include "runtime/cpu/attention_flash.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/hw/cpu_features.h"

namespace ktx::cpu::attn {

const Kernels* kernels_avx512_impl();  // attention_avx512.cpp
const Kernels* kernels_avx2_impl();    // attention_avx2.cpp

const Kernels* kernels_for(IsaTier tier, const CpuIsa& isa) {
  const bool avx2 = isa.avx2 && isa.fma && isa.f16c;
  switch (tier) {
    case IsaTier::amx:  // no tile kernels for attention: the AVX-512 ones
    case IsaTier::avx512:
      return avx2 && isa.avx512f && isa.avx512bw && isa.avx512vl ? kernels_avx512_impl()
                                                                 : nullptr;
    case IsaTier::avx2: return avx2 ? kernels_avx2_impl() : nullptr;
    case IsaTier::reference: return nullptr;
  }
  return nullptr;
}

const Kernels* best_kernels() {
  static const Kernels* best = [] {
    const CpuIsa isa = detect_cpu_isa();
    for (IsaTier t : {IsaTier::avx512, IsaTier::avx2}) {
      if (const Kernels* k = kernels_for(t, isa)) return k;
    }
    return static_cast<const Kernels*>(nullptr);
  }();
  return best;
}

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Grow-only per-thread buffer (zero-filled when it grows).
float* scratch(std::vector<float>& buf, int64_t n) {
  if (static_cast<int64_t>(buf.size()) < n) buf.assign(static_cast<size_t>(n), 0.0f);
  return buf.data();
}

struct Dims {
  int64_t dk_pad, dv_pad, rows_pad, k_ld;
};

// Widens rows [j0, j0 + n) of one slice into dst: one widen_rows call per run of rows inside a
// cache block (one run when the cache is contiguous or its blocks hold whole key blocks).
void widen_slice(const Kernels& kern, KvType t, const CacheSlice& c, int64_t j0, int64_t n,
                 float* dst, int64_t dst_ld) {
  const size_t rb = kv_row_bytes(t, c.row_stride);
  for (int64_t done = 0; done < n;) {
    const int64_t run = c.rows.run(j0 + done, n - done);
    kern.widen_rows(t, c.rows.row(j0 + done, rb), rb, c.col0, run, c.width,
                    dst + done * dst_ld, dst_ld);
    done += run;
  }
}

// Widens keys [j0, j0 + n) of the item into kb (and vb unless V lives in the K rows).
void load_block(const Kernels& kern, KvType t, const ItemSetup& it, const Dims& dm, int64_t j0,
                int64_t n, float* kb, float* vb, int64_t dk) {
  for (int s = 0; s < it.n_k; ++s)
    widen_slice(kern, t, it.k[s], j0, n, kb + it.k[s].dst_col, dm.k_ld);
  // Pad columns of K must be finite (they meet q's zero padding); rows are reused per block.
  if (dk < dm.dk_pad)
    for (int64_t r = 0; r < n; ++r) std::fill(kb + r * dm.k_ld + dk, kb + (r + 1) * dm.k_ld, 0.0f);
  if (!it.v_in_k) widen_slice(kern, t, it.v, j0, n, vb, dm.dv_pad);
}

// Runs keys [j_begin, j_end) of one item into o [rows_pad][dv_pad], m, l (initialized here).
void run_range(const Kernels& kern, const Problem& p, const Dims& dm, const ItemSetup& it,
               const float* q, const int64_t* last, int64_t j_begin, int64_t j_end, float* o,
               float* m, float* l) {
  thread_local std::vector<float> kb_buf, vb_buf, s_buf, corr_buf;
  thread_local std::vector<int64_t> valid_buf;
  float* kb = scratch(kb_buf, kBlockKeys * dm.k_ld);        // [kBlockKeys, k_ld]
  float* vb = scratch(vb_buf, kBlockKeys * dm.dv_pad);      // [kBlockKeys, dv_pad]
  float* s = scratch(s_buf, dm.rows_pad * kBlockKeys);      // [rows_pad, kBlockKeys]
  float* corr = scratch(corr_buf, dm.rows_pad);
  if (static_cast<int64_t>(valid_buf.size()) < dm.rows_pad) valid_buf.resize(dm.rows_pad);
  int64_t* valid = valid_buf.data();

  std::fill(o, o + dm.rows_pad * dm.dv_pad, 0.0f);
  std::fill(m, m + dm.rows_pad, kNegInf);
  std::fill(l, l + dm.rows_pad, 0.0f);
  const float* v_rows = it.v_in_k ? kb : vb;
  const int64_t v_ld = it.v_in_k ? dm.k_ld : dm.dv_pad;
  for (int64_t j0 = j_begin; j0 < j_end; j0 += kBlockKeys) {
    const int64_t n = std::min(kBlockKeys, j_end - j0);
    load_block(kern, p.kv, it, dm, j0, n, kb, vb, p.dk);
    for (int64_t r = 0; r < dm.rows_pad; ++r)
      valid[r] = r < it.rows ? std::clamp<int64_t>(last[r] - j0 + 1, 0, n) : 0;
    kern.qk(q, dm.dk_pad, kb, dm.k_ld, dm.rows_pad, round_up(n, kKeyQuant), dm.dk_pad, s,
            kBlockKeys);
    kern.softmax(s, kBlockKeys, dm.rows_pad, valid, p.scale, m, l, corr);
    kern.pv(s, kBlockKeys, v_rows, v_ld, dm.rows_pad, n, dm.dv_pad, corr, o, dm.dv_pad);
  }
}

// Split s of n_splits over the item's key blocks (aligned to kBlockKeys; may be empty).
void split_range(int64_t n_keys, int64_t s, int64_t n_splits, int64_t* begin, int64_t* end) {
  const int64_t blocks = (n_keys + kBlockKeys - 1) / kBlockKeys;
  *begin = std::min(n_keys, s * blocks / n_splits * kBlockKeys);
  *end = std::min(n_keys, (s + 1) * blocks / n_splits * kBlockKeys);
}

}  // namespace

void run_flash(ThreadPool& pool, const Kernels& kern, const Problem& p) {
  Dims dm;
  dm.dk_pad = round_up(p.dk, kWidthQuant);
  dm.dv_pad = round_up(p.dv, kWidthQuant);
  dm.rows_pad = round_up(p.max_rows, kRowQuant);
  dm.k_ld = dm.dk_pad;
  // Split keys only when items alone cannot feed the threads; a split gets >= one block.
  const int64_t max_blocks = std::max<int64_t>(1, (p.max_keys + kBlockKeys - 1) / kBlockKeys);
  const int64_t n_splits =
      std::clamp<int64_t>((kMinTasks + p.n_items - 1) / p.n_items, 1, max_blocks);
  const int64_t part = dm.rows_pad * dm.dv_pad;  // floats of one partial O
  // Partials of the splits, [n_items * n_splits][rows_pad(, dv_pad)]: grow-only buffers of the
  // calling thread (2 MiB at a DeepSeek-V3 decode step; every task writes all of its part).
  thread_local std::vector<float> parts_buf, part_m_buf, part_l_buf;
  float *parts = nullptr, *part_m = nullptr, *part_l = nullptr;
  if (n_splits > 1) {
    parts = scratch(parts_buf, p.n_items * n_splits * part);
    part_m = scratch(part_m_buf, p.n_items * n_splits * dm.rows_pad);
    part_l = scratch(part_l_buf, p.n_items * n_splits * dm.rows_pad);
  }

  pool.parallel_for(p.n_items * n_splits, [&](int64_t task) {
    thread_local std::vector<float> q_buf, o_buf, m_buf, l_buf;
    thread_local std::vector<int64_t> last_buf;
    const int64_t item = task / n_splits, split = task % n_splits;
    float* q = scratch(q_buf, dm.rows_pad * dm.dk_pad);  // [rows_pad, dk_pad]
    std::fill(q, q + dm.rows_pad * dm.dk_pad, 0.0f);
    if (static_cast<int64_t>(last_buf.size()) < dm.rows_pad) last_buf.resize(dm.rows_pad);
    int64_t* last = last_buf.data();
    const ItemSetup it = p.setup(item, q, dm.dk_pad, last);
    int64_t n_keys = 0;
    for (int64_t r = 0; r < it.rows; ++r) n_keys = std::max(n_keys, last[r] + 1);
    int64_t j_begin = 0, j_end = n_keys;
    if (n_splits > 1) split_range(n_keys, split, n_splits, &j_begin, &j_end);
    float* o = n_splits > 1 ? parts + task * part : scratch(o_buf, part);
    float* m = n_splits > 1 ? part_m + task * dm.rows_pad : scratch(m_buf, dm.rows_pad);
    float* l = n_splits > 1 ? part_l + task * dm.rows_pad : scratch(l_buf, dm.rows_pad);
    run_range(kern, p, dm, it, q, last, j_begin, j_end, o, m, l);
    if (n_splits > 1) return;
    for (int64_t r = 0; r < it.rows; ++r) {
      const float inv = 1.0f / l[r];  // l >= 1: the row's max term is exp(0)
      float* dst = p.out_row(item, r);
      for (int64_t i = 0; i < p.dv; ++i) dst[i] = o[r * dm.dv_pad + i] * inv;
    }
  });
  if (n_splits == 1) return;

  // Log-sum-exp merge of the splits, in split order. An empty split has m = -inf, l = 0.
  pool.parallel_for(p.n_items, [&](int64_t item) {
    for (int64_t r = 0; r < p.max_rows; ++r) {
      float* dst = p.out_row(item, r);
      if (!dst) continue;  // the item has fewer rows
      float mx = kNegInf;
      for (int64_t s = 0; s < n_splits; ++s)
        mx = std::max(mx, part_m[(item * n_splits + s) * dm.rows_pad + r]);
      double sum = 0.0;
      std::fill(dst, dst + p.dv, 0.0f);
      for (int64_t s = 0; s < n_splits; ++s) {
        const int64_t t = item * n_splits + s;
        const float ms = part_m[t * dm.rows_pad + r];
        if (ms == kNegInf) continue;
        const float w = std::exp(ms - mx);
        sum += static_cast<double>(part_l[t * dm.rows_pad + r]) * w;
        const float* os = parts + t * part + r * dm.dv_pad;
        for (int64_t i = 0; i < p.dv; ++i) dst[i] += os[i] * w;
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t i = 0; i < p.dv; ++i) dst[i] *= inv;
    }
  });
}

}  // namespace ktx::cpu::attn
