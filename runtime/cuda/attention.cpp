// runtime/cuda/attention.h: binding, launchers with their shape checks, split planning and the
// workspace. The layer functions are in attention_layers.cpp.
#include "runtime/cuda/attention.h"

#include <fmt/format.h>

#include <algorithm>

#include "runtime/cuda/kernels/flash_attn/params.cuh"

namespace ktx::cuda {
namespace {

constexpr GGMLType kHeadTypes[] = {GGMLType::F32,  GGMLType::F16,  GGMLType::BF16,
                                   GGMLType::Q4_0, GGMLType::Q5_0, GGMLType::Q8_0,
                                   GGMLType::Q4_K, GGMLType::Q5_K, GGMLType::Q6_K};
constexpr std::pair<int64_t, int64_t> kGqaDims[] = {{64, 64}, {128, 128}, {192, 128}, {192, 192}, {256, 256}};
constexpr std::pair<int64_t, int64_t> kMlaDims[] = {{512, 64}, {512, 16}, {64, 64}, {64, 16},
                                                    {128, 32}};

// Kernel constants (the #defines of the kernel families).
constexpr int kRopeThreads = 128, kRopeMaxRot = 256;  // rope/kernel.cuh
constexpr int kStoreThreads = 256;
constexpr int64_t kNormThreads = 512;                 // KTX_NORM_THREADS (norm/kernel.cuh)
constexpr int64_t kHeadMax = 256;                     // KTX_HEAD_MAX (kv_cache/kernel.cuh)                    // kv_cache/kernel.cuh
constexpr int kBiasThreads = 256;                     // bias/kernel.cuh
constexpr int kGemvWarps = 4, kGemvTThreads = 64;     // gemv, gemv_heads
constexpr int kFlashThreads = 128, kCombineThreads = 128;
constexpr int64_t kGqaRows = 16, kMlaRows = 8;        // KTX_FLASH_{GQA,MLA}_ROWS
// Split planning: enough blocks to fill an H100 twice over (132 SMs), at least this many
// cache rows per split at full context, at most this many splits.
constexpr int64_t kTargetBlocks = 264, kMinKeysPerSplit = 32, kMaxSplits = 32;

std::string lower_type(GGMLType t) {
  std::string n = ggml_type_name(static_cast<uint32_t>(t));
  for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return n;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t plan_splits(int64_t blocks_other, int64_t n_ctx) {
  const int64_t want = ceil_div(kTargetBlocks, std::max<int64_t>(1, blocks_other));
  const int64_t cap = std::max<int64_t>(1, std::min(kMaxSplits, n_ctx / kMinKeysPerSplit));
  return std::clamp<int64_t>(want, 1, cap);
}

// The block shape of a core launch: query heads per block, tokens per block, grid y and z.
struct FlashGrid {
  int64_t heads_per_block, toks_per_block, chunks, y, z;
};
FlashGrid gqa_grid(const GqaCoreDesc& d, int64_t n_tok) {
  const int64_t group = d.n_head / d.n_head_kv;
  const int64_t tt = kGqaRows / group;
  return {group, tt, 1, d.n_head_kv, ceil_div(n_tok, tt)};
}
FlashGrid mla_grid(const MlaCoreDesc& d, int64_t n_tok) {
  const int64_t hb = std::min(d.n_head, kMlaRows), tt = kMlaRows / hb;
  const int64_t chunks = ceil_div(d.n_head, hb);
  return {hb, tt, chunks, chunks, ceil_div(n_tok, tt)};
}

bool aligned4(const void* p) { return reinterpret_cast<uintptr_t>(p) % 4 == 0; }

// Launches one core kernel (and the combine when split) once the caller filled the
// query/key/value/output fields of p.
Status launch_flash(cudaKernel_t kernel, cudaKernel_t combine, KtxFlashParams p,
                    const FlashGrid& g, int64_t n_split, int64_t dv, FlashScratch scratch,
                    const char* what, cudaStream_t stream) {
  const int64_t need = flash_partial_floats(n_split, p.n_tok, p.n_head, dv);
  if (need > scratch.floats)
    return Error("cuda {}: {} splits of {} tokens need {} partial floats, the scratch holds {}",
                 what, n_split, p.n_tok, need, scratch.floats);
  p.heads_per_block = static_cast<int>(g.heads_per_block);
  p.toks_per_block = static_cast<int>(g.toks_per_block);
  p.n_split = static_cast<int>(n_split);
  p.part_o = scratch.part;
  p.part_ml = n_split > 1 ? scratch.part + n_split * p.n_tok * p.n_head * dv : nullptr;
  void* args[] = {&p};
  const dim3 grid(static_cast<unsigned>(n_split), static_cast<unsigned>(g.y), static_cast<unsigned>(g.z));
  KTX_RETURN_IF_ERROR(launch(kernel, grid, dim3(kFlashThreads), args, 0, stream));
  if (n_split == 1) return Status::ok();
  const float* po = p.part_o;
  const float* pml = p.part_ml;
  float* out = p.out;
  long long ot = p.out_tok, oh = p.out_head;
  int nt = p.n_tok, nh = p.n_head, d = static_cast<int>(dv), ns = static_cast<int>(n_split);
  void* cargs[] = {&po, &pml, &out, &ot, &oh, &nt, &nh, &d, &ns};
  return launch(combine, dim3(static_cast<unsigned>(nh), static_cast<unsigned>(nt)),
                dim3(kCombineThreads), cargs, 0, stream);
}

}  // namespace

int64_t gqa_splits(const GqaCoreDesc& d, int64_t n_tok, int64_t n_ctx) {
  if (d.n_head_kv <= 0 || d.n_head % d.n_head_kv != 0 || d.n_head / d.n_head_kv > kGqaRows) return 1;
  const FlashGrid g = gqa_grid(d, n_tok);
  return plan_splits(g.y * g.z, n_ctx);
}

int64_t mla_splits(const MlaCoreDesc& d, int64_t n_tok, int64_t n_ctx) {
  if (d.n_head <= 0) return 1;
  const FlashGrid g = mla_grid(d, n_tok);
  return plan_splits(g.y * g.z, n_ctx);
}

int64_t flash_partial_floats(int64_t n_split, int64_t n_tok, int64_t n_head, int64_t dv) {
  return n_split > 1 ? n_split * n_tok * n_head * (dv + 2) : 0;
}

Expected<AttnKernels> AttnKernels::bind(const Library& lib) {
  AttnKernels k;
  KTX_ASSIGN_OR_RETURN(k.rope_, lib.kernel("ktx_rope"));
  KTX_ASSIGN_OR_RETURN(k.bias_, lib.kernel("ktx_add_bias"));
  KTX_ASSIGN_OR_RETURN(k.kv_store_, lib.kernel("ktx_kv_store"));
  KTX_ASSIGN_OR_RETURN(k.combine_, lib.kernel("ktx_flash_combine"));
  if (auto f = lib.kernel("ktx_mla_kv_store")) k.mla_kv_store_ = *f;  // optional: older plans
  if (auto f = lib.kernel("ktx_head_norm_rope")) k.head_norm_rope_ = *f;
  for (GGMLType t : kHeadTypes) {
    KTX_ASSIGN_OR_RETURN(k.gemv_heads_[t], lib.kernel("ktx_gemv_heads_" + lower_type(t)));
    KTX_ASSIGN_OR_RETURN(k.gemv_t_heads_[t], lib.kernel("ktx_gemv_t_heads_" + lower_type(t)));
  }
  for (const auto& dims : kGqaDims) {
    KTX_ASSIGN_OR_RETURN(k.gqa_[dims], lib.kernel(fmt::format("ktx_flash_gqa_k{}_v{}", dims.first, dims.second)));
  }
  for (const auto& dims : kMlaDims) {
    KTX_ASSIGN_OR_RETURN(k.mla_[dims], lib.kernel(fmt::format("ktx_flash_mla_l{}_r{}", dims.first, dims.second)));
  }
  return k;
}

Status AttnKernels::rope(float* x, int64_t ld_x, int64_t n_heads, int64_t head_stride,
                         int64_t offset, int64_t n_rot, RopeStyle style, const float* inv_freq,
                         const int32_t* d_pos, int64_t t_base, int64_t n_tok,
                         cudaStream_t stream) const {
  if (n_rot <= 0 || n_rot % 2 != 0 || n_rot > kRopeMaxRot)
    return Error("cuda rope: n_rot = {} must be even and in [2, {}]", n_rot, kRopeMaxRot);
  if (n_heads > 1 && offset + n_rot > head_stride)
    return Error("cuda rope: dims [{}, {}) run past a head of {}", offset, offset + n_rot, head_stride);
  if (n_tok <= 0 || n_heads <= 0) return Status::ok();
  long long lx = ld_x, hs = head_stride;
  int nh = static_cast<int>(n_heads), off = static_cast<int>(offset), nr = static_cast<int>(n_rot);
  int neox = style == RopeStyle::Neox ? 1 : 0, tb = static_cast<int>(t_base);
  void* args[] = {&x, &lx, &nh, &hs, &off, &nr, &neox, &inv_freq, &d_pos, &tb};
  // One pair per thread (up to 64 head slices per token): 128 heads x 32 pairs take 32 blocks.
  const int64_t slices = std::clamp<int64_t>(ceil_div(n_heads * (n_rot / 2), kRopeThreads), 1, 64);
  return launch(rope_, dim3(static_cast<unsigned>(n_tok), static_cast<unsigned>(slices)),
                dim3(kRopeThreads), args, 0, stream);
}

Status AttnKernels::mla_kv_store(const float* kv, int64_t ld_kv, int64_t kvl, int64_t rope,
                                 const float* norm_w, float eps, RopeStyle style,
                                 const float* inv_freq, void* latent, void* k_pe, int64_t n_ctx,
                                 const int32_t* d_pos, int64_t t_base, int64_t n_tok,
                                 cudaStream_t stream) const {
  if (!mla_kv_store_) return Error("cuda mla_kv_store: the plan's GPU code lacks ktx_mla_kv_store");
  if (kvl <= 0 || rope <= 0 || rope % 2 != 0 || rope > kRopeMaxRot || kvl + rope > ld_kv)
    return Error("cuda mla_kv_store: latent {} + rope {} in rows of {} (rope even, <= {})", kvl,
                 rope, ld_kv, kRopeMaxRot);
  if (n_tok <= 0) return Status::ok();
  long long lk = ld_kv;
  int l = static_cast<int>(kvl), r = static_cast<int>(rope), tb = static_cast<int>(t_base);
  int nc = static_cast<int>(n_ctx), neox = style == RopeStyle::Neox ? 1 : 0;
  auto* lat = static_cast<unsigned short*>(latent);
  auto* pe = static_cast<unsigned short*>(k_pe);
  void* args[] = {&kv, &lk, &l, &r, &norm_w, &eps, &neox, &inv_freq, &lat, &pe, &d_pos, &tb, &nc};
  // The thread count Kernels::rms_norm gives a row of kvl (the sums must round alike).
  const int64_t threads = std::clamp<int64_t>((kvl / 4 + 31) / 32 * 32, 32, kNormThreads);
  return launch(mla_kv_store_, dim3(static_cast<unsigned>(n_tok)),
                dim3(static_cast<unsigned>(threads)), args, 0, stream);
}

Status AttnKernels::head_norm_rope(float* x, int64_t ld_x, int64_t n_heads, int64_t hd,
                                   const float* bias, const float* norm_w, float eps,
                                   int64_t n_rot, RopeStyle style, const float* inv_freq,
                                   const int32_t* d_pos, int64_t t_base, int64_t n_tok,
                                   void* cache, int64_t n_ctx, HeadV v,
                                   cudaStream_t stream) const {
  if (!head_norm_rope_) return Error("cuda head_norm_rope: the plan's GPU code lacks ktx_head_norm_rope");
  if (hd <= 0 || hd > kHeadMax || n_rot <= 0 || n_rot % 2 != 0 || n_rot > hd)
    return Error("cuda head_norm_rope: head dim {} (at most {}), n_rot {} (even, <= head dim)",
                 hd, kHeadMax, n_rot);
  if (v.v && (v.dv <= 0 || !v.cache || !cache))
    return Error("cuda head_norm_rope: v heads need dv > 0, a v cache and the k cache");
  if (n_tok <= 0 || n_heads <= 0) return Status::ok();
  long long lx = ld_x, lv = v.ld_v;
  int h = static_cast<int>(hd), nr = static_cast<int>(n_rot), tb = static_cast<int>(t_base);
  int nc = static_cast<int>(n_ctx), neox = style == RopeStyle::Neox ? 1 : 0;
  int dv = static_cast<int>(v.dv);
  auto* kc = static_cast<unsigned short*>(cache);
  auto* vc = static_cast<unsigned short*>(v.cache);
  void* args[] = {&x, &lx, &h, &bias, &norm_w, &eps, &nr, &neox, &inv_freq, &d_pos, &tb,
                  &kc, &nc, &v.v, &lv, &dv, &v.bias, &vc};
  // The thread count Kernels::rms_norm gives a row of hd (the sums must round alike).
  const int64_t threads = std::clamp<int64_t>((hd / 4 + 31) / 32 * 32, 32, kNormThreads);
  return launch(head_norm_rope_, dim3(static_cast<unsigned>(n_tok), static_cast<unsigned>(n_heads)),
                dim3(static_cast<unsigned>(threads)), args, 0, stream);
}

Status AttnKernels::add_bias(float* x, int64_t ld_x, const float* bias, int64_t n, int64_t n_tok,
                             cudaStream_t stream) const {
  if (n <= 0 || n_tok <= 0) return Status::ok();
  long long lx = ld_x;
  int nn = static_cast<int>(n);
  void* args[] = {&x, &lx, &bias, &nn};
  return launch(bias_, dim3(static_cast<unsigned>(ceil_div(n, kBiasThreads)), static_cast<unsigned>(n_tok)),
                dim3(kBiasThreads), args, 0, stream);
}

Status AttnKernels::kv_store(const float* src, int64_t ld_src, int64_t width, void* cache,
                             int64_t ld_cache, int64_t n_ctx, const int32_t* d_pos,
                             int64_t t_base, int64_t n_tok, cudaStream_t stream) const {
  if (width > ld_cache)
    return Error("cuda kv_store: rows of {} into cache rows of {}", width, ld_cache);
  if (width <= 0 || n_tok <= 0) return Status::ok();
  long long ls = ld_src, lc = ld_cache;
  int w = static_cast<int>(width), tb = static_cast<int>(t_base), nc = static_cast<int>(n_ctx);
  auto* c = static_cast<unsigned short*>(cache);
  void* args[] = {&src, &ls, &w, &c, &lc, &d_pos, &tb, &nc};
  return launch(kv_store_, dim3(static_cast<unsigned>(ceil_div(width, kStoreThreads)), static_cast<unsigned>(n_tok)),
                dim3(kStoreThreads), args, 0, stream);
}

Status AttnKernels::gemv_heads(GGMLType type, const void* w, int64_t head_w_bytes,
                               int64_t row_bytes, const float* x, int64_t ld_x, int64_t head_x,
                               float* y, int64_t ld_y, int64_t head_y, int64_t n_heads,
                               int64_t n_rows, int64_t k, int64_t n_tok,
                               cudaStream_t stream) const {
  auto it = gemv_heads_.find(type);
  if (it == gemv_heads_.end())
    return Error("cuda gemv_heads: no kernel for {}", ggml_type_name(static_cast<uint32_t>(type)));
  int64_t be = 0, bb = 0;
  ggml_type_block(static_cast<uint32_t>(type), &be, &bb);
  if (k <= 0 || k % 32 != 0 || k % be != 0)
    return Error("cuda gemv_heads: k = {} is not whole 32-element chunks of {} blocks", k,
                 ggml_type_name(static_cast<uint32_t>(type)));
  if (n_tok < 1 || n_tok > kGemvMaxTokens)
    return Error("cuda gemv_heads: {} tokens (1..{} per call)", n_tok, kGemvMaxTokens);
  if (n_rows <= 0 || n_heads <= 0) return Status::ok();
  long long hw = head_w_bytes, rb = row_bytes, lx = ld_x, hx = head_x, ly = ld_y, hy = head_y;
  int rows = static_cast<int>(n_rows), kk = static_cast<int>(k), nt = static_cast<int>(n_tok);
  void* args[] = {&w, &hw, &rb, &x, &lx, &hx, &y, &ly, &hy, &rows, &kk, &nt};
  const dim3 grid(static_cast<unsigned>(ceil_div(n_rows, kGemvWarps * gemv_rows_per_warp(k))),
                  static_cast<unsigned>(n_heads));
  return launch(it->second, grid, dim3(32 * kGemvWarps), args, 0, stream);
}

Status AttnKernels::gemv_t_heads(GGMLType type, const void* w, int64_t head_w_bytes,
                                 int64_t row_bytes, const float* x, int64_t ld_x,
                                 int64_t head_x, float* y, int64_t ld_y, int64_t head_y,
                                 int64_t n_heads, int64_t n_in, int64_t n_out, int64_t n_tok,
                                 cudaStream_t stream) const {
  auto it = gemv_t_heads_.find(type);
  if (it == gemv_t_heads_.end())
    return Error("cuda gemv_t_heads: no kernel for {}", ggml_type_name(static_cast<uint32_t>(type)));
  int64_t be = 0, bb = 0;
  ggml_type_block(static_cast<uint32_t>(type), &be, &bb);
  if (n_out <= 0 || n_out % 32 != 0 || n_out % be != 0)
    return Error("cuda gemv_t_heads: n_out = {} is not whole 32-element chunks of {} blocks",
                 n_out, ggml_type_name(static_cast<uint32_t>(type)));
  if (n_tok < 1 || n_tok > kGemvMaxTokens)
    return Error("cuda gemv_t_heads: {} tokens (1..{} per call)", n_tok, kGemvMaxTokens);
  if (n_in <= 0 || n_heads <= 0) return Status::ok();
  long long hw = head_w_bytes, rb = row_bytes, lx = ld_x, hx = head_x, ly = ld_y, hy = head_y;
  int ni = static_cast<int>(n_in), no = static_cast<int>(n_out), nt = static_cast<int>(n_tok);
  void* args[] = {&w, &hw, &rb, &x, &lx, &hx, &y, &ly, &hy, &ni, &no, &nt};
  const dim3 grid(static_cast<unsigned>(ceil_div(n_out, 8 * kGemvTThreads)), static_cast<unsigned>(n_heads));
  return launch(it->second, grid, dim3(kGemvTThreads), args, 0, stream);
}

Status AttnKernels::gqa(const GqaCoreDesc& d, const float* q, int64_t ld_q, const void* k_cache,
                        const void* v_cache, int64_t n_ctx, const int32_t* d_pos, int64_t t_base,
                        int64_t n_tok, float* out, int64_t ld_out, FlashScratch scratch,
                        cudaStream_t stream, int64_t n_split) const {
  if (d.n_head_kv <= 0 || d.n_head % d.n_head_kv != 0 || d.n_head / d.n_head_kv > kGqaRows)
    return Error("cuda gqa: {} query heads over {} KV heads (groups of 1..{} heads)", d.n_head,
                 d.n_head_kv, kGqaRows);
  auto it = gqa_.find({d.head_dim_k, d.head_dim_v});
  if (it == gqa_.end())
    return Error("cuda gqa: no kernel for head dims k {} v {} (64/64, 128/128, 192/128, "
                 "192/192, 256/256)", d.head_dim_k, d.head_dim_v);
  if (ld_q < d.n_head * d.head_dim_k || ld_out < d.n_head * d.head_dim_v)
    return Error("cuda gqa: row strides q {} / out {} below {} / {}", ld_q, ld_out,
                 d.n_head * d.head_dim_k, d.n_head * d.head_dim_v);
  if (!aligned4(k_cache) || !aligned4(v_cache)) return Error("cuda gqa: caches not 4-byte aligned");
  if (n_tok <= 0) return Status::ok();
  if (n_split <= 0) n_split = gqa_splits(d, n_tok, n_ctx);
  KtxFlashParams p{};
  p.q1 = q; p.q1_tok = ld_q; p.q1_head = d.head_dim_k;
  p.k1 = static_cast<const unsigned short*>(k_cache);
  p.k1_row = d.n_head_kv * d.head_dim_k; p.k1_head = d.head_dim_k;
  p.v = static_cast<const unsigned short*>(v_cache);
  p.v_row = d.n_head_kv * d.head_dim_v; p.v_head = d.head_dim_v;
  p.out = out; p.out_tok = ld_out; p.out_head = d.head_dim_v;
  p.d_pos = d_pos; p.t_base = static_cast<int>(t_base); p.n_tok = static_cast<int>(n_tok);
  p.n_head = static_cast<int>(d.n_head); p.group = static_cast<int>(d.n_head / d.n_head_kv);
  p.n_ctx = static_cast<int>(n_ctx); p.scale = d.scale;
  return launch_flash(it->second, combine_, p, gqa_grid(d, n_tok), n_split, d.head_dim_v,
                      scratch, "gqa", stream);
}

Status AttnKernels::mla(const MlaCoreDesc& d, const float* q_abs, int64_t ld_q_abs,
                        const float* q_pe, int64_t ld_q_pe, int64_t q_pe_head, const void* latent,
                        const void* k_pe, int64_t n_ctx, const int32_t* d_pos, int64_t t_base,
                        int64_t n_tok, float* o_lat, int64_t ld_out, FlashScratch scratch,
                        cudaStream_t stream, int64_t n_split) const {
  auto it = mla_.find({d.kv_lora, d.rope});
  if (it == mla_.end())
    return Error("cuda mla: no kernel for kv_lora {} rope {} (512/64, 512/16, 64/64, 64/16, 128/32)",
                 d.kv_lora, d.rope);
  if (d.n_head <= 0 || ld_q_abs < d.n_head * d.kv_lora || ld_out < d.n_head * d.kv_lora)
    return Error("cuda mla: {} heads with row strides q_abs {} / out {} (need {})", d.n_head,
                 ld_q_abs, ld_out, d.n_head * d.kv_lora);
  if (!aligned4(latent) || !aligned4(k_pe)) return Error("cuda mla: caches not 4-byte aligned");
  if (n_tok <= 0) return Status::ok();
  if (n_split <= 0) n_split = mla_splits(d, n_tok, n_ctx);
  KtxFlashParams p{};
  p.q1 = q_abs; p.q1_tok = ld_q_abs; p.q1_head = d.kv_lora;
  p.q2 = q_pe; p.q2_tok = ld_q_pe; p.q2_head = q_pe_head;
  p.k1 = static_cast<const unsigned short*>(latent); p.k1_row = d.kv_lora; p.k1_head = 0;
  p.k2 = static_cast<const unsigned short*>(k_pe); p.k2_row = d.rope; p.k2_head = 0;
  p.out = o_lat; p.out_tok = ld_out; p.out_head = d.kv_lora;
  p.d_pos = d_pos; p.t_base = static_cast<int>(t_base); p.n_tok = static_cast<int>(n_tok);
  p.n_head = static_cast<int>(d.n_head); p.group = static_cast<int>(d.n_head);
  p.n_ctx = static_cast<int>(n_ctx); p.scale = d.scale;
  return launch_flash(it->second, combine_, p, mla_grid(d, n_tok), n_split, d.kv_lora, scratch,
                      "mla", stream);
}

}  // namespace ktx::cuda
