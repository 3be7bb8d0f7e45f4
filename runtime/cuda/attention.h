// The attention op on the GPU: the kernels of runtime/cuda/kernels/{rope,kv_cache,bias,
// gemv_heads,flash_attn} bound from a loaded Library, one launcher per kernel with the shapes
// checked, a workspace made once at load, and the two layer functions that compose the op
// exactly as the CPU engine does (runtime/engine/attention.cpp, attention_mla.cpp): same
// tensor names, same order of projections, biases, per-head norms and RoPE, the same f16
// cache rows (LayerCache), attention over positions 0 .. own.
//
// Capture-safe: every call only enqueues kernels on `stream` (no allocation, no sync, no read
// of device memory); the call's first position is read by the kernels from d_pos, and grid
// sizes depend only on the shapes, n_tok and the workspace's n_ctx, so one CUDA graph per
// n_tok replays at any position. The host cannot see *d_pos: cache rows at or past n_ctx are
// neither written nor read (the caller keeps *d_pos + n_tok <= n_ctx).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <utility>

#include "common/model/config.h"
#include "runtime/cuda/dev_tensor.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/library.h"

namespace ktx::cuda {

// GQA core shape (query head h reads KV head h / (n_head / n_head_kv)).
struct GqaCoreDesc {
  int64_t n_head = 0;      // query heads
  int64_t n_head_kv = 0;   // KV heads; n_head / n_head_kv in 1..16
  int64_t head_dim_k = 0;  // (k, v) in {(64,64), (128,128), (192,128), (192,192), (256,256)}
  int64_t head_dim_v = 0;
  float scale = 1.0f;      // multiplies q·k (cfg.attn_scale)
};

// Absorbed MLA core shape: every head reads the one latent cache.
struct MlaCoreDesc {
  int64_t n_head = 0;   // query heads (128 in DeepSeek-V3)
  int64_t kv_lora = 0;  // latent width: 64 or 512
  int64_t rope = 0;     // roped key width: 16 or 64
  float scale = 1.0f;   // cfg.attn_scale
};

// Key splits the core uses for n_tok queries over a cache of n_ctx rows (fixed per shape, so
// graphs hold), and the floats of split partials that needs (0 for one split).
int64_t gqa_splits(const GqaCoreDesc& d, int64_t n_tok, int64_t n_ctx);
int64_t mla_splits(const MlaCoreDesc& d, int64_t n_tok, int64_t n_ctx);
int64_t flash_partial_floats(int64_t n_split, int64_t n_tok, int64_t n_head, int64_t dv);

// Where the split partials go: floats at part, capacity in floats.
struct FlashScratch {
  float* part = nullptr;
  int64_t floats = 0;
};

class AttnKernels {
 public:
  // Errors: the image lacks an entry point (names it).
  static Expected<AttnKernels> bind(const Library& lib);

  // In place: the n_rot first dims from `offset` of each of n_heads heads (head_stride apart)
  // of n_tok token rows (ld_x apart), at positions *d_pos + t_base + t; inv_freq [n_rot / 2].
  Status rope(float* x, int64_t ld_x, int64_t n_heads, int64_t head_stride, int64_t offset,
              int64_t n_rot, RopeStyle style, const float* inv_freq, const int32_t* d_pos,
              int64_t t_base, int64_t n_tok, cudaStream_t stream) const;
  // x[t * ld_x + i] += bias[i] for i < n, t < n_tok.
  Status add_bias(float* x, int64_t ld_x, const float* bias, int64_t n, int64_t n_tok,
                  cudaStream_t stream) const;
  // f16 cache rows *d_pos + t_base + t (of ld_cache elements) = src rows (width floats).
  Status kv_store(const float* src, int64_t ld_src, int64_t width, void* cache,
                  int64_t ld_cache, int64_t n_ctx, const int32_t* d_pos, int64_t t_base,
                  int64_t n_tok, cudaStream_t stream) const;
  // MLA's two caches from the kv_a_mqa output kv [n_tok][ld_kv] (latent [kvl], then k_pe
  // [rope] per token) in one launch: latent row = f16(rms_norm(latent) · norm_w), k_pe row =
  // f16(rope(k_pe)), at rows *d_pos + t_base + t: what rms_norm + rope + two kv_store do.
  // Plans made before the kernel lack it: has_mla_kv_store() is then false.
  bool has_mla_kv_store() const { return mla_kv_store_ != nullptr; }
  Status mla_kv_store(const float* kv, int64_t ld_kv, int64_t kvl, int64_t rope,
                      const float* norm_w, float eps, RopeStyle style, const float* inv_freq,
                      void* latent, void* k_pe, int64_t n_ctx, const int32_t* d_pos,
                      int64_t t_base, int64_t n_tok, cudaStream_t stream) const;
  // GQA's per-head steps in one launch: for n_heads heads of hd floats per token row of x
  // (ld_x apart): + bias (null: none), rms_norm · norm_w (null: none), rope of the first
  // n_rot dims at *d_pos + t_base + t; back into x when cache is null (queries), else f16 into
  // cache rows [n_ctx][n_heads · hd] (keys; x unchanged), and then, with v, v heads of dv
  // (+ v_bias) into v_cache [n_ctx][n_heads · dv]. What add_bias, rms_norm, rope and kv_store
  // do one after another. Plans made before the kernel lack it: has_head_norm_rope() false.
  struct HeadV {
    const float* v = nullptr;
    int64_t ld_v = 0, dv = 0;
    const float* bias = nullptr;
    void* cache = nullptr;
  };
  bool has_head_norm_rope() const { return head_norm_rope_ != nullptr; }
  Status head_norm_rope(float* x, int64_t ld_x, int64_t n_heads, int64_t hd, const float* bias,
                        const float* norm_w, float eps, int64_t n_rot, RopeStyle style,
                        const float* inv_freq, const int32_t* d_pos, int64_t t_base,
                        int64_t n_tok, void* cache, int64_t n_ctx, HeadV v,
                        cudaStream_t stream) const;
  // Per head h < n_heads: y[t*ld_y + h*head_y + r] = W_h[r] · x[t*ld_x + h*head_x ..] for
  // r < n_rows, W_h's rows at w + h*head_w_bytes, row_bytes apart, k elements (Kernels::gemv
  // rules: k a multiple of 32 and of the block, n_tok <= kGemvMaxTokens).
  Status gemv_heads(GGMLType type, const void* w, int64_t head_w_bytes, int64_t row_bytes,
                    const float* x, int64_t ld_x, int64_t head_x, float* y, int64_t ld_y,
                    int64_t head_y, int64_t n_heads, int64_t n_rows, int64_t k, int64_t n_tok,
                    cudaStream_t stream) const;
  // Per head: y[t*ld_y + h*head_y + c] = Σ_{n < n_in} W_h[n][c] · x[t*ld_x + h*head_x + n] for
  // c < n_out (W_h's rows of n_out elements; n_out a multiple of 32 and of the block).
  Status gemv_t_heads(GGMLType type, const void* w, int64_t head_w_bytes, int64_t row_bytes,
                      const float* x, int64_t ld_x, int64_t head_x, float* y, int64_t ld_y,
                      int64_t head_y, int64_t n_heads, int64_t n_in, int64_t n_out,
                      int64_t n_tok, cudaStream_t stream) const;

  // GQA core. q: [n_tok][ld_q] roped (head h at h * head_dim_k); caches f16 [n_ctx][n_head_kv *
  // head_dim]; out: [n_tok][ld_out] (head h at h * head_dim_v). Query t is at position
  // *d_pos + t_base + t and sees cache rows 0 .. that. n_split 0 = gqa_splits().
  Status gqa(const GqaCoreDesc& d, const float* q, int64_t ld_q, const void* k_cache,
             const void* v_cache, int64_t n_ctx, const int32_t* d_pos, int64_t t_base,
             int64_t n_tok, float* out, int64_t ld_out, FlashScratch scratch,
             cudaStream_t stream, int64_t n_split = 0) const;
  // Absorbed MLA core. q_abs: [n_tok][ld_q_abs] (head h at h * kv_lora); q_pe of token t, head
  // h at q_pe + t * ld_q_pe + h * q_pe_head; latent f16 [n_ctx][kv_lora], k_pe f16
  // [n_ctx][rope]; o_lat: [n_tok][ld_out] (head h at h * kv_lora).
  Status mla(const MlaCoreDesc& d, const float* q_abs, int64_t ld_q_abs, const float* q_pe,
             int64_t ld_q_pe, int64_t q_pe_head, const void* latent, const void* k_pe,
             int64_t n_ctx, const int32_t* d_pos, int64_t t_base, int64_t n_tok, float* o_lat,
             int64_t ld_out, FlashScratch scratch, cudaStream_t stream,
             int64_t n_split = 0) const;

 private:
  cudaKernel_t rope_ = nullptr, bias_ = nullptr, kv_store_ = nullptr, combine_ = nullptr;
  cudaKernel_t mla_kv_store_ = nullptr, head_norm_rope_ = nullptr;  // optional
  std::map<GGMLType, cudaKernel_t> gemv_heads_, gemv_t_heads_;
  std::map<std::pair<int64_t, int64_t>, cudaKernel_t> gqa_;  // (head_dim_k, head_dim_v)
  std::map<std::pair<int64_t, int64_t>, cudaKernel_t> mla_;  // (kv_lora, rope)
};

// Device scratch of one attention layer call, made once at load for (config, max_tokens,
// n_ctx) and shared by every layer (they run one after another on one stream). Queries are
// processed kAttnChunk tokens at a time and projections kGemvMaxTokens at a time, so the size
// does not grow with long prefills.
inline constexpr int64_t kAttnChunk = 64;

class AttnWorkspace {
 public:
  // Bytes create() allocates (for the memory plan).
  static int64_t bytes_for(const ModelConfig& cfg, int64_t max_tokens, int64_t n_ctx);
  static Expected<AttnWorkspace> create(const ModelConfig& cfg, int64_t max_tokens,
                                        int64_t n_ctx);

  AttnKind kind = AttnKind::GQA;  // the config it was made for
  int64_t n_ctx = 0;       // cache rows of every layer's cache
  int64_t max_tokens = 0;  // tokens per call it was made for (any n_tok works: chunks)
  int64_t chunk = 0;       // queries per core launch: min(max_tokens, kAttnChunk)
  // [kGemvMaxTokens][...] per projection chunk; [chunk][...] per query chunk.
  float* q = nullptr;         // [chunk][n_head * head_dim_k]        (MLA: n_head * (nope + rope))
  float* k = nullptr;         // [8][n_head_kv * head_dim_k]          (GQA)
  float* v = nullptr;         // [8][n_head_kv * head_dim_v]          (GQA)
  float* heads_out = nullptr; // [chunk][n_head * head_dim_v]         (input of attn_output)
  float* qa = nullptr;        // [8][q_lora]                          (MLA with q_lora)
  float* kv = nullptr;        // [8][kv_lora + rope]                  (MLA: kv_a_mqa output)
  float* latent = nullptr;    // [8][kv_lora]                         (MLA)
  float* q_abs = nullptr;     // [chunk][n_head * kv_lora]            (MLA)
  float* o_lat = nullptr;     // [chunk][n_head * kv_lora]            (MLA)
  FlashScratch part;          // split partials for up to `chunk` queries
  XQuant xq;                  // the projections' rounded inputs (integer GEMVs)
  bool float_gemv = false;    // projections through the float GEMVs instead
  bool unfused = false;       // one kernel per step (no fused kernels): tests, A/B runs
  XQuant* gemv_xq() { return float_gemv ? nullptr : &xq; }
  size_t bytes() const { return buf_.size() + xq.bytes(); }

 private:
  DeviceBuffer buf_;
};

// One attention layer: out [n_tok][n_embd] = attention of h [n_tok][n_embd] (both device),
// with this call's keys and values written to the layer's f16 caches at rows *d_pos .. +n_tok
// first. d_inv_freq: rope_frequencies(cfg) as float [n_rot / 2] on the device. Weights by GGUF
// name through `tensors` (errors name a missing or misshapen tensor).
//   GQA: k_cache [n_ctx][n_head_kv * head_dim_k], v_cache [n_ctx][n_head_kv * head_dim_v].
//   MLA: k_cache = latents [n_ctx][kv_lora], v_cache = roped k_pe [n_ctx][qk_rope_dim].
Status gqa_attention_layer(const Kernels& kern, const AttnKernels& attn, const ModelConfig& cfg,
                           int64_t layer, const TensorLookup& tensors, const float* d_inv_freq,
                           const float* h, float* out, void* k_cache, void* v_cache,
                           const int32_t* d_pos, int64_t n_tok, AttnWorkspace& ws,
                           cudaStream_t stream);
Status mla_attention_layer(const Kernels& kern, const AttnKernels& attn, const ModelConfig& cfg,
                           int64_t layer, const TensorLookup& tensors, const float* d_inv_freq,
                           const float* h, float* out, void* k_cache, void* v_cache,
                           const int32_t* d_pos, int64_t n_tok, AttnWorkspace& ws,
                           cudaStream_t stream);

}  // namespace ktx::cuda
