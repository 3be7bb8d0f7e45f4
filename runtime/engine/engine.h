// The reference engine: a plain float32 forward pass of every supported architecture on
// weights dequantized row by row (llm.c style, one function per layer kind). It is the oracle
// the fast paths are tested against and what `ktx-run` runs until those exist. Frontends
// (chat, eval, serve) use only this API.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/gguf/gguf.h"
#include "common/kernels/kernel_desc.h"
#include "common/model/config.h"
#include "common/plan/plan.h"
#include "common/util/status.h"

#include "runtime/engine/program.h"

namespace ktx {

// The fast routed-expert kernels a plan chose for one layer: the attributes kernel_decode,
// config_decode, kernel_prefill, config_prefill of its routed_experts op (common/kernels/kernel_desc.h
// string forms; kernel_prefill may be "reference" or empty: large calls then run the decode
// kernels too).
struct MoeKernelAttrs {
  std::string decode, decode_config, prefill, prefill_config;
  // Fewest tokens per call that take the prefill kernel (the plan's prefill_min_tokens; 0:
  // more than the decode descriptor's max_tokens, the rule of plans without the attribute).
  int64_t prefill_min_tokens = 0;
};

struct EngineOptions {
  int threads = 0;       // 0 = one per physical core (cpu/thread_pool.h)
  int64_t n_ctx = 0;     // 0 = min(n_ctx_train, 4096)
  // Dequantize every weight to float32 once at load when that takes at most this many MiB;
  // larger models dequantize rows on demand (slower, but memory stays at the GGUF's size).
  int64_t f32_cache_mib = 1024;
  // Layers whose routed experts run the fast CPU kernels (activations quantized, int16-grade);
  // every other layer runs the exact float32 path.
  std::map<int64_t, MoeKernelAttrs> moe_kernels;
  // Weight matrices of the non-expert ops (attention, dense FFN, shared experts, router,
  // lm_head) that run the fast linear kernels (cpu/linear.h), by GGUF tensor name, with the
  // plan's descriptor (checked against the tensor at load); the others run the exact float32
  // matmul. Setting any also turns the f32 weight cache off (the fast path keeps weights in
  // their GGUF bytes).
  std::map<std::string, cpu::LinearDesc> linear_kernels;
  // Layers and linears with fast kernels run their exact oracle instead (cpu::moe_reference with the
  // activation rounding the chosen kernel would apply for each call): the kernels' results
  // without the kernels, to tell a kernel error from rounding (slow; for eval and tests).
  bool moe_oracle = false;
  // > 0: every routed-expert layer with a prefill kernel runs it for calls of at least this many
  // tokens, whatever the plan's prefill_min_tokens says (1: always; eval --force-prefill).
  int64_t prefill_min_tokens = 0;
  // Restricts the CPU features the fast kernels may use (each is also checked on this CPU, so
  // a feature can only be removed): tests use it to stand for a weaker CPU.
  std::optional<CpuIsa> cpu_isa;
  // Hosts with several NUMA nodes: move each routed expert's row chunks at load to the node
  // whose workers compute them (cpu/numa_place.h), so decode reads local memory only. The
  // environment variable KTX_NUMA_PLACE=0 turns it off too.
  bool numa_place = true;
  // Element type of the KV cache of layers whose attention runs the fast kernels: "f16",
  // "bf16", "f32" or "q8_0" (cpu::KvType); empty: what the plan's attention op says (its kv_cache attribute), f16
  // when it says nothing. Reference attention always keeps an f32 cache.
  std::string kv_cache_type;
  // The program to run (a plan's op list and arena, as load_from_plan passes them); empty:
  // reference_program(cfg), the op list ktc would emit with reference kernels.
  std::vector<PlanOp> program;
  std::vector<PlanBuffer> buffers;
  // GPU code of the plan (ktc's NVRTC cubin) and the arch it was made for: needed when the
  // program places ops on the GPU.
  std::vector<uint8_t> gpu_code;
  std::string gpu_arch;
  // GPU GEMVs decode every weight to float against float activations (the float32 path's
  // accuracy, slower) instead of the integer GEMVs on activations rounded to int16 per 32
  // elements (runtime/cuda/kernels/gemv_q16). The environment variable KTX_CUDA_GEMV=float
  // does the same.
  bool gpu_float_gemv = false;
  // Load-time progress lines (weight repacking, NUMA placement); may be empty.
  std::function<void(const std::string&)> progress;
};

// The per-layer kernel choices of a plan's routed_experts ops. An op marked kernel="reference"
// (or without kernel attributes) is left out. Errors: kernel_decode without config_decode (or
// the prefill pair incomplete), naming the op.
Expected<std::map<int64_t, MoeKernelAttrs>> moe_kernels_from_plan(const Plan& plan);

// The weight matrices of the plan's ops marked kernel = "gemv" with their descriptors (the
// op's linears attribute). Errors name the op: no linears attribute (an older plan), an entry
// that does not parse.
Expected<std::map<std::string, cpu::LinearDesc>> linear_kernels_from_plan(const Plan& plan);

struct ModelImpl;

class Model {
 public:
  // Checks the tensors against `cfg` (ModelConfig::check_tensors) before anything else.
  static Expected<std::unique_ptr<Model>> load(const ModelConfig& cfg,
                                               std::shared_ptr<const GGUFFile> gguf,
                                               const EngineOptions& opt);
  ~Model();
  const ModelConfig& config() const;
  const GGUFFile& gguf() const;
  int64_t n_ctx() const;        // default context of a Session
  // Whether a GPU backend drives whole calls (then the GPU attention layers keep their KV
  // cache in the backend's per-session state, outside any KvPool, and sessions cannot share
  // cache blocks).
  bool gpu_driven() const;
  // Whether some layer runs kernels that quantize activations (then the float32 error bounds
  // do not apply; see tools/ktx-run/eval/eval.h).
  bool quantizes_activations() const;
  // One line per distinct kernel set, "blk.1-3 decode: gate=... up=... down=...; prefill: ...";
  // "reference (float32)" when no layer runs fast kernels.
  std::string kernel_summary() const;
  // What the model holds in memory besides sessions: the GGUF mapping (file-backed: pages are
  // read on first touch), load-time repacks (prefill experts, linear weights without an
  // in-place kernel) and the f32 weight cache of small reference plans.
  struct Memory {
    uint64_t gguf_mapped = 0, repacked_experts = 0, repacked_linears = 0, f32_cache = 0;
  };
  Memory memory() const;
  // Pins the calling thread to the CPU the engine's thread pool leaves for its caller, where
  // the pool's workers are pinned (cpu::ThreadPool::pin_caller): for a thread other than the
  // one that loaded the model that will run sessions (the server's scheduler).
  // Returns that CPU, or -1 when nothing was pinned (unpinned pool, KTX_PIN=0).
  int pin_caller() const;
  // Threads of the engine's pool, the caller's slot included (1 without a pool).
  int threads() const;
  const ModelImpl& impl() const { return *impl_; }

 private:
  explicit Model(std::unique_ptr<ModelImpl> impl);
  std::unique_ptr<ModelImpl> impl_;
};

// Called with HF-style hidden states: index 0 = embeddings, i = output of layer i-1, and
// n_layer = after the final norm. `hidden` is [n_tokens][n_embd] for the current call.
using HiddenHook = std::function<void(int64_t index, std::span<const float> hidden, int64_t n_tokens)>;
// Called with every named intermediate ("blk.3.ffn_moe_out"): [n_tokens][width].
using TraceHook = std::function<void(const std::string& name, const float* data, int64_t n_tokens,
                                     int64_t width)>;

struct SessionCache;
struct ProgramOp;
class KvPool;

// Where a Session's time went, by op kind ("attention", "routed_experts", "lm_head", ...), and
// how many tokens each routed expert received (the expert-load spread `ktx-run bench --profile`
// prints, so benchmark files with degenerate routing are visible). Accumulates over calls
// until clear().
struct OpProfile {
  struct Entry {
    double seconds = 0;
    int64_t calls = 0;
  };
  std::map<std::string, Entry> by_kind;
  std::map<int64_t, std::vector<int64_t>> expert_tokens;  // layer -> [n_expert] token counts
  void clear() {
    by_kind.clear();
    expert_tokens.clear();
  }
};

// One sequence: its KV cache and position.
// Expert choices of the MoE layers, per layer in call order ([tokens][top_k] per call): a
// session records them, another replays them. Eval's --oracle replays the kernels' choices so
// that it measures arithmetic alone: where two experts' scores nearly tie, any rounding may
// pick either, and one flipped choice would otherwise swamp the kernels' error.
struct RouteLog {
  std::map<int64_t, std::vector<int32_t>> ids;  // layer -> chosen ids of every call, appended
  std::map<int64_t, size_t> next;               // layer -> replay position
};

// One sequence: its KV cache (a table of blocks of a KvPool, kv_pool.h) and position.
class Session {
 public:
  // n_ctx <= 0: the model's default context. Without a pool the session has its own, of
  // n_ctx positions (rounded up to whole blocks), as a contiguous cache would; with one it
  // takes blocks from it as the sequence grows (a pool of the same model).
  Session(const Model& m, int64_t n_ctx = 0);
  Session(const Model& m, int64_t n_ctx, std::shared_ptr<KvPool> pool);
  ~Session();

  // Runs `tokens` at positions n_past().., appending to the cache. Returns logits
  // [n_out][n_vocab], n_out = all_logits ? tokens.size() : 1 (the last). Errors (nothing is
  // changed) if the context would overflow, a token id is out of range, tokens is empty, or
  // the pool has no block left for the new positions.
  Expected<std::vector<float>> forward(std::span<const int32_t> tokens, bool all_logits);

  // Bytes of this session's KV cache (its own pool, or the blocks it holds of a shared one)
  // and activation arena (as large as the largest call so far).
  uint64_t kv_cache_bytes() const;
  uint64_t arena_bytes() const;

  // What the driving backend (the GPU's) measured over this session's calls; zeros without one.
  DeviceStats device_stats() const;

  int64_t n_past() const { return n_past_; }
  int64_t n_ctx() const { return n_ctx_; }
  // Forgets every position (its blocks go back to the pool: cached, if they hold tokens).
  void reset();
  // Forgets every cached position from n on (0 <= n <= n_past()); the rows before n stay, so
  // a new prompt sharing its first n tokens with what was evaluated skips their prefill.
  void truncate(int64_t n);
  // Replaces this session's cache with the first n positions of `src` (a session of the same
  // model): a prompt sharing its first n tokens with what src evaluated skips their prefill.
  // On one pool the full blocks are shared and a partial last block is copied; across pools
  // the rows are copied. Errors: another model, n > src.n_past() or n > n_ctx(), no free
  // block, a GPU-driven model. (batch.cpp)
  Status copy_prefix(const Session& src, int64_t n);
  // The prefix cache: forgets this session's positions, then takes the longest prefix of
  // `tokens`, at most max_len of them, whose rows the pool holds: whole blocks of the chain
  // that evaluated those tokens (shared), then the longest partial match of the next block
  // (its rows copied into a block of its own when another sequence uses that block, else the
  // cached block itself, its rows past the match dropped). Returns the positions taken
  // (n_past()).
  int64_t attach_prefix(std::span<const int32_t> tokens, int64_t max_len);
  // The pool the cache lives in, and how many of its blocks this session holds.
  const KvPool& kv_pool() const;
  int64_t kv_blocks_held() const;
  void set_hidden_hook(HiddenHook hook) { hidden_hook_ = std::move(hook); }
  void set_trace_hook(TraceHook hook) { trace_hook_ = std::move(hook); }
  // Times every op into *profile (null: off, the default; profiling adds a clock read per op).
  void set_profile(OpProfile* profile) { profile_ = profile; }
  // Record every MoE layer's choices into *log, or (replay) take them from *log instead of the
  // router's own (the router's scores still give the weights). Null: off.
  void set_route_record(RouteLog* log) { route_record_ = log; }
  void set_route_replay(RouteLog* log) { route_replay_ = log; }

 private:
  // One call of at most the driving backend's max_call_tokens.
  Expected<std::vector<float>> forward_chunk(std::span<const int32_t> tokens, bool all_logits);
  // Blocks for positions [n_past, n_past + n): the block written first made this session's
  // alone (copied when shared, its cached content past n_past dropped), new ones allocated.
  // Errors (nothing held changes but newly allocated blocks, see trim): no block left.
  Status reserve(int64_t n);
  // After a call: the pool learns which tokens the rows hold; n_past advances.
  void commit(std::span<const int32_t> tokens);
  // Releases blocks past those n_past needs (after a failed call).
  void trim();
  // The hooks' view of an op's output.
  void observe(const ProgramOp& op, const float* out, int64_t n_tok);

  friend class BatchStep;
  const Model& model_;
  int64_t n_ctx_ = 0;
  int64_t n_past_ = 0;
  bool own_pool_ = false;
  std::unique_ptr<SessionCache> cache_;
  HiddenHook hidden_hook_;
  TraceHook trace_hook_;
  OpProfile* profile_ = nullptr;
  RouteLog* route_record_ = nullptr;
  RouteLog* route_replay_ = nullptr;
};

// One sequence's share of a batched step: its session, the tokens it advances by (at positions
// session->n_past()..), and whether the step returns the logits of its last token.
struct BatchEntry {
  Session* session = nullptr;
  std::span<const int32_t> tokens;
  bool want_logits = true;
};

// Advances several sequences in one pass through the program (continuous batching): the
// entries' tokens are concatenated, so every per-token op (norms, projections, router, experts,
// lm_head) runs once over all of them and the MoE layers see all tokens of the step together;
// attention runs per entry over that session's own KV cache and positions. Each entry computes
// what its session's own forward() of the same tokens computes (the float32 reference exactly;
// fast kernels that switch to a GEMM above some token count round differently). The workspace
// (the concatenated activations) is kept between steps. Not thread-safe: one step at a time,
// and the sessions must not be used elsewhere during it.
class BatchStep {
 public:
  explicit BatchStep(const Model& m);
  ~BatchStep();
  // Returns logits [n_want][n_vocab], one row per entry with want_logits, in entry order.
  // Errors (no session changes): no entries, an empty token list, two entries of one session,
  // a session of another model, a context overflow or a token id out of range (naming the
  // entry).
  Expected<std::vector<float>> run(std::span<const BatchEntry> entries);
  uint64_t arena_bytes() const;

 private:
  const Model& model_;
  std::unique_ptr<SessionCache> work_;
};

// Everything a ktx-run command needs from a plan path: read the plan, open and validate the
// GGUF it names (or `gguf_override`), check that the GGUF and this host match the plan, build
// the Model.
struct LoadedModel {
  Plan plan;
  std::shared_ptr<const GGUFFile> gguf;
  std::unique_ptr<Model> model;
};
// One line: "memory: GGUF mapping 14.99 GB + repacked experts 0 B + ... = total".
std::string memory_summary(const Model& model, const Session* session);

Expected<LoadedModel> load_from_plan(const std::string& plan_path, const std::string& gguf_override,
                                     const EngineOptions& opt);

}  // namespace ktx
