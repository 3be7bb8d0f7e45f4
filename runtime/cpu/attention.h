// CPU attention over a KV cache of f32, f16, bf16 or q8_0 rows: grouped-query attention (qwen3moe,
// qwen2moe, Mixtral) and absorbed multi-head latent attention (deepseek2). The math is the
// engine's scalar float32 attention (runtime/engine/attention.cpp, attention_mla.cpp): token t
// of a call attends to cache positions [0, n_past + t], softmax over the scaled scores, output
// the softmax-weighted sum of values. The caller has already written this call's keys and
// values into the cache (rows n_past .. n_past + n_tok - 1).
//
// The fast versions are flash-style: keys are visited in blocks with an online softmax, so no
// score row longer than a block is ever held, and cache rows are widened to f32 once per block
// and work item, not once per head. Each has a plain *_ref twin (the oracle of the tests, and
// the fallback on CPUs without AVX2+FMA+F16C). The work split depends only on the shapes,
// never on the pool size, so a result is the same bits with 1 or 16 threads.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/util/status.h"
#include "runtime/cpu/thread_pool.h"

namespace ktx::cpu {

// Element type of the KV cache. f16 is what plans ask for by default (ktc plan --kv-cache);
// bf16 has f32's exponent range, half the bytes; f32 keeps the exact path of the scalar engine;
// q8_0 is ggml's Q8_0 (an f16 scale and 32 int8 per block, 34 bytes: 1.06 bytes an element),
// for long contexts. A q8_0 row of n elements is ceil(n / 32) blocks over the row's elements in
// order, the last one zero-padded when n is not a multiple of 32; a row holds all KV heads of
// one position, so with head widths that are multiples of 32 (every real model) no block spans
// two heads.
enum class KvType : uint8_t { f32, f16, bf16, q8_0 };

inline constexpr int64_t kKvQ8Block = 32;        // elements of a q8_0 block
inline constexpr size_t kKvQ8BlockBytes = 34;    // its f16 scale, then 32 int8

const char* kv_type_name(KvType t);                          // "f32", "f16", "bf16", "q8_0"
Expected<KvType> parse_kv_type(const std::string& name);     // error names the text
size_t kv_row_bytes(KvType t, int64_t n);                    // one cache row of n elements

// n floats to one cache row (f16/bf16: round to nearest, ties to even; q8_0: ggml's
// quantize_row_q8_0, scale max|x| / 127 stored as f16, values rounded to nearest), and back
// (exact: widening, or q * scale as ggml's dequantize_row_q8_0).
void kv_store_row(KvType t, const float* src, void* dst, int64_t n);
void kv_load_row(KvType t, const void* src, float* dst, int64_t n);

// Keys per block of the flash kernels (attention_flash.h): a key range they widen at once
// starts at a multiple of this. A paged cache whose blocks hold a multiple of it (the engine's
// KvPool) therefore hands every kernel block one contiguous run of rows.
inline constexpr int64_t kAttnKeyBlock = 64;

// Where a cache's rows live: contiguous (block_ids null: row j at base + j * row_bytes) or
// paged: position j in block block_ids[j / block_rows], at row j % block_rows of it, block b
// holding rows [b * block_rows, (b + 1) * block_rows) of base's storage. The row width and
// type come from the call. The kernels read whole runs of consecutive rows inside one block.
struct KvRows {
  const void* base = nullptr;
  const int32_t* block_ids = nullptr;
  int64_t block_rows = 0;
  KvRows() = default;
  KvRows(const void* contiguous) : base(contiguous) {}  // NOLINT: a plain [rows] cache
  KvRows(const void* storage, const int32_t* ids, int64_t rows_per_block)
      : base(storage), block_ids(ids), block_rows(rows_per_block) {}
  // Row j of rows row_bytes long.
  const uint8_t* row(int64_t j, size_t row_bytes) const {
    const auto* b = static_cast<const uint8_t*>(base);
    if (!block_ids) return b + static_cast<size_t>(j) * row_bytes;
    const int64_t blk = block_ids[j / block_rows];
    return b + static_cast<size_t>(blk * block_rows + j % block_rows) * row_bytes;
  }
  // Rows from j on that lie in j's block (all of them when contiguous), at most n.
  int64_t run(int64_t j, int64_t n) const {
    return block_ids ? std::min(n, block_rows - j % block_rows) : n;
  }
};

// Grouped-query attention: query head h reads KV head h / (n_head / n_head_kv).
// Numerically stable softmax of n scores in place (max-subtracted exp, sum in double): the
// plain twins' and the engine's float32 reference attention's one softmax.
void softmax_inplace(float* s, int64_t n);

struct GqaAttnDesc {
  int64_t n_head = 0;      // query heads
  int64_t n_head_kv = 0;   // key/value heads; divides n_head
  int64_t head_dim_k = 0;  // q and k width per head
  int64_t head_dim_v = 0;  // v and output width per head
  float scale = 1.0f;      // multiplies q·k before the softmax (usually 1/sqrt(head_dim_k))
  KvType kv = KvType::bf16;
};

// q:       [n_tok][n_head * head_dim_k] f32 (roped), row stride q_stride floats.
// k_cache: [n_past + n_tok] rows of n_head_kv * head_dim_k elements of type d.kv (KvRows:
//          contiguous or paged).
// v_cache: [n_past + n_tok] rows of n_head_kv * head_dim_v elements of type d.kv.
// out:     [n_tok][n_head * head_dim_v] f32, dense.
void gqa_attention(ThreadPool& pool, const GqaAttnDesc& d, const float* q, int64_t q_stride,
                   KvRows k_cache, KvRows v_cache, int64_t n_past, int64_t n_tok, float* out);
void gqa_attention_ref(const GqaAttnDesc& d, const float* q, int64_t q_stride, KvRows k_cache,
                       KvRows v_cache, int64_t n_past, int64_t n_tok, float* out);

// Absorbed MLA: every head reads the same latent cache.
struct MlaAttnDesc {
  int64_t n_head = 0;   // query heads (128 in DeepSeek-V3)
  int64_t kv_lora = 0;  // latent width (512 in DeepSeek-V3)
  int64_t rope = 0;     // shared roped key width (64 in DeepSeek-V3)
  float scale = 1.0f;   // multiplies the score (softmax scale of the unabsorbed head dim)
  KvType kv = KvType::bf16;
};

// q_abs:  [n_tok][n_head * kv_lora] f32 (W_k^T q_nope per head), dense.
// q_pe:   rope part of head h of token t at q_pe + t * q_pe_stride + h * q_pe_head_stride.
// latent: [n_past + n_tok] rows of kv_lora elements of type d.kv; k_pe: rows of rope elements
//         (KvRows: contiguous or paged).
// score(t,h,j) = (q_abs·c_j + q_pe·kpe_j) * scale;  o_lat[t][h] = sum_j softmax_j(score) c_j.
// o_lat:  [n_tok][n_head * kv_lora] f32, dense.
void mla_attention(ThreadPool& pool, const MlaAttnDesc& d, const float* q_abs, const float* q_pe,
                   int64_t q_pe_stride, int64_t q_pe_head_stride, KvRows latent, KvRows k_pe,
                   int64_t n_past, int64_t n_tok, float* o_lat);
void mla_attention_ref(const MlaAttnDesc& d, const float* q_abs, const float* q_pe,
                       int64_t q_pe_stride, int64_t q_pe_head_stride, KvRows latent, KvRows k_pe,
                       int64_t n_past, int64_t n_tok, float* o_lat);

}  // namespace ktx::cpu
