// Internal to the attention kernels (attention.h): the per-ISA block primitives and the one
// flash-style driver that GQA (attention_gqa.cpp) and MLA (attention_mla.cpp) share.
//
// A work item is a set of query rows that read the same key stream: the query heads of one KV
// head for a few tokens (GQA), or a group of heads for a few tokens (MLA, where every head
// reads the same latent rows). For each block of kBlockKeys positions the driver widens the
// cache rows once into f32 scratch, then runs S = Q·Kᵀ, the online softmax update, and
// O = O·corr + P·V on the whole item. Decode with few items also splits the keys (split-K);
// each split keeps (O, running max, sum) and a fixed-order log-sum-exp merge combines them.
// Every count here is a function of the shapes only, so results do not depend on the pool.
#pragma once

#include <cstdint>
#include <functional>

#include "common/hw/hw_profile.h"
#include "runtime/cpu/attention.h"
#include "common/kernels/kernel_desc.h"

namespace ktx::cpu::attn {

constexpr int64_t kBlockKeys = kAttnKeyBlock;  // keys per block: S block of 32 rows is 8 KiB
constexpr int64_t kRowQuant = 4;    // item rows are padded to a multiple of this
constexpr int64_t kKeyQuant = 4;    // QK computes keys in groups of this many
constexpr int64_t kWidthQuant = 16; // row widths (q, k, v, o) padded to the widest vector
constexpr int64_t kMinTasks = 32;   // split keys until there are this many tasks (16 threads x 2)
static_assert(kBlockKeys % kKeyQuant == 0 && kBlockKeys % kWidthQuant == 0);

inline int64_t round_up(int64_t x, int64_t q) { return (x + q - 1) / q * q; }

// The block primitives of one ISA. Row counts are multiples of kRowQuant, widths multiples of
// kWidthQuant; leading dimensions (ld) are in floats.
struct Kernels {
  const char* name;
  // dst[r][0..n) = elements [col0, col0 + n) of cache row r (at src + r * row_bytes) widened
  // to f32, r < rows; the values kv_load_row gives, bit for bit.
  void (*widen_rows)(KvType t, const void* src, size_t row_bytes, int64_t col0, int64_t rows,
                     int64_t n, float* dst, int64_t dst_ld);
  // s[m][j] = q[m] · k[j] over d floats; m < rows, j < keys (keys a multiple of kKeyQuant).
  void (*qk)(const float* q, int64_t q_ld, const float* k, int64_t k_ld, int64_t rows,
             int64_t keys, int64_t d, float* s, int64_t s_ld);
  // Online softmax of one block. Row m may read its first valid[m] keys (0..kBlockKeys); the
  // rest of its kBlockKeys scores are masked. s becomes P = exp(scale*s - m_new), m and l
  // (running max of the scaled scores and sum of P) are updated, corr[m] = exp(m_old - m_new).
  void (*softmax)(float* s, int64_t s_ld, int64_t rows, const int64_t* valid, float scale,
                  float* m, float* l, float* corr);
  // o[m] = o[m] * corr[m] + sum_{j < keys} p[m][j] * v[j]  over d floats.
  void (*pv)(const float* p, int64_t p_ld, const float* v, int64_t v_ld, int64_t rows,
             int64_t keys, int64_t d, const float* corr, float* o, int64_t o_ld);
};

// nullptr where the CPU lacks the ISA (avx512: AVX-512 F/BW/VL + F16C + FMA; avx2: AVX2 +
// FMA + F16C); the reference tier has no block kernels (the *_ref functions are used).
const Kernels* kernels_for(IsaTier tier, const CpuIsa& isa);
// The best on this CPU (detect_cpu_isa, once); nullptr: use the references.
const Kernels* best_kernels();

// One segment of a cache row: `width` elements from column col0 of rows of `row_stride`
// elements (kv_row_bytes(type, row_stride) bytes each, contiguous or paged), placed at column
// dst_col of the widened row.
struct CacheSlice {
  KvRows rows;
  int64_t row_stride = 0, col0 = 0, width = 0, dst_col = 0;
};

// What one work item reads and where its rows come from and go.
struct ItemSetup {
  CacheSlice k[2];         // a K row is one or two segments (MLA: latent, then k_pe)
  int n_k = 1;
  CacheSlice v;            // ignored when v_in_k
  bool v_in_k = false;     // V rows are the first dv columns of the widened K rows (MLA)
  int64_t rows = 0;        // query rows of the item (<= Problem::max_rows)
};

struct Problem {
  KvType kv = KvType::bf16;
  int64_t dk = 0, dv = 0;  // score and output widths (MLA: dk = kv_lora + rope, dv = kv_lora)
  float scale = 1.0f;
  int64_t n_items = 0, max_rows = 0;
  int64_t max_keys = 0;    // keys the longest item reads (for the split-K count)
  // Describe item i: fill q rows [rows][q_ld] (zeros past dk are already there), last[r] =
  // last key position row r reads, and return the item's caches.
  std::function<ItemSetup(int64_t item, float* q, int64_t q_ld, int64_t* last)> setup;
  // Where normalized output row r of item i goes (dv floats).
  std::function<float*(int64_t item, int64_t r)> out_row;
};

// Runs the problem on the pool with kernels k (not null).
void run_flash(ThreadPool& pool, const Kernels& k, const Problem& p);

// gqa_attention / mla_attention with the given kernels (tests run every tier the CPU has).
void gqa_attention_with(const Kernels& k, ThreadPool& pool, const GqaAttnDesc& d, const float* q,
                        int64_t q_stride, KvRows k_cache, KvRows v_cache, int64_t n_past,
                        int64_t n_tok, float* out);
void mla_attention_with(const Kernels& k, ThreadPool& pool, const MlaAttnDesc& d,
                        const float* q_abs, const float* q_pe, int64_t q_pe_stride,
                        int64_t q_pe_head_stride, KvRows latent, KvRows k_pe, int64_t n_past,
                        int64_t n_tok, float* o_lat);

}  // namespace ktx::cpu::attn
