// Internals shared by the engine's translation units: the loaded model (weights by name, RoPE
// frequencies, thread pool), a session's KV cache, and one function per layer kind. Not part
// of the public API.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/engine/engine.h"
#include "runtime/engine/kv_pool.h"
#include "runtime/engine/moe_fast.h"
#include "runtime/engine/program.h"
#include "runtime/cpu/attention.h"
#include "runtime/cpu/linear.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/engine/weights.h"

namespace ktx {

struct ModelImpl {
  ModelConfig cfg;
  std::shared_ptr<const GGUFFile> gguf;
  int64_t n_ctx = 0;
  std::unordered_map<std::string, Weight> weights;
  std::vector<double> rope_inv_freq;  // n_rot / 2 frequencies (YaRN-corrected when enabled)
  std::unique_ptr<cpu::ThreadPool> pool;  // the one pool: every op and the expert kernels
  // The CPU features kernels may use: this CPU's, narrowed by EngineOptions::cpu_isa, AMX only
  // with the OS's permission.
  CpuIsa cpu_isa;
  // Fast routed experts (moe_fast.h): [n_layer], null where the float32 path runs.
  std::vector<std::unique_ptr<MoeFastLayer>> moe_fast;
  // Fast linear layers (cpu/linear.h) by GGUF tensor name; a tensor without one runs the
  // float32 reference matmul.
  std::unordered_map<std::string, std::unique_ptr<cpu::Linear>> linears;
  bool moe_oracle = false;  // EngineOptions::moe_oracle
  // Layers whose attention op runs the fast kernels (kernel = "gemv": cpu/attention.h over a
  // cache of kv_type); the others run the float32 reference over an f32 cache.
  std::vector<bool> attn_fast;
  cpu::KvType kv_type = cpu::KvType::f16;
  // What Session::forward runs, and the backends its ops are bound to.
  std::vector<std::unique_ptr<Backend>> backends;
  Program program;
  // The backend that drives whole calls (the GPU's, when the plan places ops there); null:
  // Session::forward walks the ops itself.
  Backend* driver = nullptr;
  ModelImpl();
  ~ModelImpl();

  // check_tensors ran at load, so every name a layer asks for exists.
  const Weight& w(const std::string& name) const { return weights.at(name); }
  const Weight* find(const std::string& name) const {
    auto it = weights.find(name);
    return it == weights.end() ? nullptr : &it->second;
  }
};

// One layer's view of a session's KV cache rows: positions live in the session's blocks of
// its KvPool (kv_pool.h), block_rows positions each, `width` elements of `type` per row
// (cpu::kv_row_bytes each). GQA: k and v after RoPE. MLA: the normalized latent (k =
// [kv_lora]) and the roped shared key part (v = [rope dim]); heads are expanded from them at
// attention time (the "absorbed" form), which keeps the cache small. The float32 reference
// reads f32 caches only; the fast kernels (cpu/attention.h) read any. Built per call
// (SessionCache::layer): the block table may grow between calls.
struct LayerCache {
  cpu::KvType type = cpu::KvType::f32;
  int64_t k_width = 0, v_width = 0;
  size_t k_rb = 0, v_rb = 0;                  // bytes per row
  uint8_t *k_base = nullptr, *v_base = nullptr;  // the pool's storage of this layer
  const int32_t* blocks = nullptr;            // the session's block ids, in position order
  int64_t block_rows = 0;
  cpu::KvRows k() const { return {k_base, blocks, block_rows}; }
  cpu::KvRows v() const { return {v_base, blocks, block_rows}; }
  // Writes n_rows rows of k_width (v_width) floats at positions pos.., converting to `type`.
  void store_k(int64_t pos, const float* src, int64_t n_rows) {
    store(k_base, k_rb, k_width, pos, src, n_rows);
  }
  void store_v(int64_t pos, const float* src, int64_t n_rows) {
    store(v_base, v_rb, v_width, pos, src, n_rows);
  }

 private:
  void store(uint8_t* base, size_t rb, int64_t width, int64_t pos, const float* src,
             int64_t n_rows) const {
    const cpu::KvRows rows{base, blocks, block_rows};
    for (int64_t r = 0; r < n_rows; ++r)
      cpu::kv_store_row(type, src + r * width, const_cast<uint8_t*>(rows.row(pos + r, rb)), width);
  }
};
// Elements per position of a layer's KV cache rows (LayerCache): GQA k and v after RoPE; MLA
// the normalized latent (k) and the roped shared key part (v).
struct KvWidths {
  int64_t k = 0, v = 0;
};
inline KvWidths kv_widths(const ModelConfig& c) {
  if (c.attn == AttnKind::MLA) return {c.kv_lora_rank, c.qk_rope_dim};
  return {c.n_head_kv * c.head_dim_k, c.n_head_kv * c.head_dim_v};
}

struct SessionCache {
  // The KV rows: blocks of the pool (shared with other sessions, or this session's own),
  // listed in position order. Empty pool: a batch workspace, which holds no cache.
  std::shared_ptr<KvPool> pool;
  std::vector<int32_t> blocks;
  // Layer il's view of the rows (the layer must have CPU rows in the pool).
  LayerCache layer(int64_t il) const;
  Arena arena;  // the program's buffers, kept between calls
  // The driving backend's state for this session (declared after the arena: it may hold the
  // arena's host memory registered, and goes first).
  std::unique_ptr<BackendState> driver_state;
};

// Sizes every program buffer for an n_tok-token call with n_out logit rows (session.cpp;
// Session::forward and BatchStep).
void size_arena(const Program& prog, int64_t n_tok, int64_t n_out, int64_t n_embd, Arena& arena);

// What a layer function needs about the current call.
struct StepCtx {
  const ModelImpl& m;
  cpu::ThreadPool& pool;
  int64_t n_past = 0;   // position of the first token of this call
  int64_t n_tok = 0;    // tokens in this call
  const TraceHook* trace = nullptr;
  OpProfile* profile = nullptr;
  RouteLog* route_record = nullptr;  // Session::set_route_record
  RouteLog* route_replay = nullptr;  // Session::set_route_replay
  void emit(const std::string& name, const float* data, int64_t width) const {
    if (trace && *trace) (*trace)(name, data, n_tok, width);
  }
};

// Adds the time from construction to destruction to profile->by_kind[kind] (no-op when null).
class OpTimer {
 public:
  OpTimer(OpProfile* profile, const char* kind)
      : profile_(profile), kind_(kind),
        start_(profile ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{}) {}
  ~OpTimer() { stop(); }
  // Records now instead of at destruction (once).
  void stop() {
    if (!profile_) return;
    OpProfile::Entry& e = profile_->by_kind[kind_];
    e.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    ++e.calls;
    profile_ = nullptr;
  }
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

 private:
  OpProfile* profile_;
  const char* kind_;
  std::chrono::steady_clock::time_point start_;
};

// linear_ops.cpp: the fast linears of the plan (EngineOptions::linear_kernels), created at load.
Status load_linears(ModelImpl& m, const EngineOptions& opt);
// dst[t * ld_dst + r] = W[row0 + r] · src[t * ld_src ..] for r < n_out, t < n_tok, through the
// tensor's fast kernel when the plan chose one, else the float32 reference matmul.
void linear(const StepCtx& s, const std::string& tensor, int64_t row0, int64_t n_out,
            const float* src, int64_t ld_src, int64_t n_tok, float* dst, int64_t ld_dst);
// Whole matrix: dst [n_tok][n_rows] = src [n_tok][row_len] · Wᵀ.
void linear(const StepCtx& s, const std::string& tensor, const float* src, float* dst);
// Per head h < n_heads: rows [h·head_rows, +head_rows) on the input at src + h·src_head_stride,
// into dst + h·dst_head_stride (cpu::Linear::run_heads; one row-range linear() per head on the
// reference path).
void linear_heads(const StepCtx& s, const std::string& tensor, int64_t n_heads, int64_t head_rows,
                  const float* src, int64_t src_head_stride, int64_t ld_src, float* dst,
                  int64_t dst_head_stride, int64_t ld_dst);

// Grow-only per-thread scratch for the forward pass's temporaries (a fresh 30 MB vector per op
// would pay its page faults on every call). Contents are not cleared: callers write every
// element they read. Each function uses its own slots, so nested calls never share one.
enum class Scratch : int {
  gqa_q, gqa_k, gqa_v, gqa_out,
  mla_q, mla_q_abs, mla_o_lat, mla_out, mla_qa, mla_kv, mla_latent, mla_k_pe,
  mla_lat_f32, mla_kpe_f32, mla_kx, mla_vx, mla_og, mla_kbt,
  ffn_gate, ffn_up, router_logits,
  attn_scores,  // one query's scores in the reference attention (each pool worker its own)
  count
};
float* scratch(Scratch slot, int64_t n);

// ops.cpp
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);
// Rotate the first n_rot dims of one head vector at position pos (style from the config).
void apply_rope(const ModelImpl& m, float* x, int64_t pos);
// The same rotation on n_heads head vectors head_stride floats apart (one sin/cos table).
void apply_rope_heads(const ModelImpl& m, float* x, int64_t n_heads, int64_t head_stride,
                      int64_t pos);
// One head vector rotated by a position's table (n_rot / 2 cosines and sines).
void rotate(const ModelImpl& m, float* x, const float* cs, const float* sn);
std::vector<double> rope_frequencies(const ModelConfig& c);
float silu(float x);
// Reads a small f32 tensor (norm weights, biases) as one row.
const float* small_tensor(const Weight& w, std::vector<float>& buf);

// attention.cpp / attention_mla.cpp: dst [n_tok][n_embd] = attention output (after o_proj).
void attention_gqa(const StepCtx& s, int64_t il, const float* h, LayerCache& cache, float* dst);
void attention_mla(const StepCtx& s, int64_t il, const float* h, LayerCache& cache, float* dst);

// ffn.cpp: dst [n_tok][n_embd].
void ffn_dense(const StepCtx& s, const std::string& prefix, const std::string& suffix,
               const float* h, float* dst);
// The router: chosen/weights [n_tok][top_k] (expert ids, their weights with scale applied).
void route_tokens(const StepCtx& s, int64_t il, const float* h, int32_t* chosen, float* weights);
// The routed experts' weighted sum (fast kernels where the layer has them). Errors come only
// from the fast kernels (routing they reject).
Status routed_experts(const StepCtx& s, int64_t il, const float* h, const int32_t* chosen,
                      const float* weights, float* dst);
// The shared experts (scaled by their sigmoid gate where the model has one).
void shared_experts(const StepCtx& s, int64_t il, const float* h, float* dst);

// router.cpp: pick n_expert_used experts for one token from its router logits; writes the
// chosen expert ids and their weights (scale applied). bias may be null.
// forced (may be null): use these ids instead of choosing (weights from this token's scores).
void route_token(const ModelConfig& c, const float* logits, const float* bias, int32_t* experts,
                 float* weights, const int32_t* forced = nullptr);

}  // namespace ktx
