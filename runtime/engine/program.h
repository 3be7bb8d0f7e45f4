// The program a Session runs: the plan's op list, checked once at load (every op's kind known,
// its device claimed by a backend that supports it, its buffers consistent) and bound to that
// backend. Session::forward walks it op by op; nothing in the runtime re-derives the layer
// sequence from the model config (plan-less callers — unit tests and the float32 oracle — get
// reference_program(), the op list ktc would emit with reference kernels).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/model/config.h"
#include "common/plan/plan.h"
#include "common/util/status.h"

namespace ktx {

enum class OpKind : uint8_t {
  embed, rms_norm, attention, add, dense_ffn, router, routed_experts, shared_experts, lm_head
};
const char* op_kind_name(OpKind kind);

class Backend;
struct ModelImpl;
struct StepCtx;
struct SessionCache;

struct ProgramOp {
  OpKind kind = OpKind::add;
  std::string name;                  // "blk.3.ffn_moe"
  int layer = -1;
  std::vector<std::string> tensors;  // GGUF tensors it reads (the plan's list)
  std::string kernel;                // the plan's kernel attribute ("gemv", "reference", "")
  std::string kv_cache;              // attention: the plan's KV cache type ("f16"; "" = none given)
  std::vector<int> in;               // arena buffers read, operand order
  int out = -1;                      // arena buffer written
  Backend* backend = nullptr;        // the backend of its device
  // Routed experts the plan streams to the GPU (kt-stream: attributes stream = "gpu",
  // stream_min_tokens, stream_chunk): calls of at least stream_min_tokens tokens copy the
  // layer's expert weights to the GPU and run it there; 0 = never (the op's own backend).
  int64_t stream_min_tokens = 0;
  int64_t stream_chunk = 0;  // the most tokens the plan lets one prefill call take
};

// One call's buffers: act buffers [n_tok][width] floats; route buffers [n_tok][top_k] expert
// ids and weights.
struct Arena {
  std::vector<std::vector<float>> act;
  std::vector<std::vector<int32_t>> route_ids;
  std::vector<std::vector<float>> route_weights;
};

// What an op needs about the current call besides StepCtx.
struct OpCall {
  const StepCtx& s;
  std::span<const int32_t> tokens;
  SessionCache& cache;
  Arena& arena;
  int64_t first_logit = 0;  // lm_head computes rows [first_logit, n_tok) only
  int64_t n_ctx = 0;        // the session's context (KV cache positions)
};

struct Program;

// Called after each op of a call with the op's output on the host ([n_tok][width] floats; the
// lm_head's rows from first_logit): trace and hidden-state hooks.
using OpObserver = std::function<void(const ProgramOp& op, const float* out)>;

// What the driving backend saw of a session's calls (Session::device_stats).
struct DeviceStats {
  int64_t calls = 0;           // calls it ran
  int64_t graph_launches = 0;  // of those, replays of a captured CUDA graph
  double call_seconds = 0.0;   // wall time of the calls
  double host_seconds = 0.0;   // time the host steps (the CPU's ops) took inside them
  // Calls run with a profile: timing events around every device op (inside the graph when
  // the call replays one), so the GPU's busy time per call is known and its idle time is the
  // call's wall time minus that.
  int64_t timed_calls = 0;
  double timed_call_seconds = 0.0;  // wall time of the timed calls
  double device_seconds = 0.0;      // device-op time inside them (the GPU busy)
  // Calls that streamed routed experts to the GPU (ProgramOp::stream_min_tokens), the layers
  // they ran there and the expert bytes they copied.
  int64_t streamed_calls = 0;
  int64_t streamed_layers = 0;
  uint64_t streamed_bytes = 0;
};

// What a backend keeps per session besides the host arena (the GPU's device buffers, KV
// cache, streams and captured graphs). SessionCache owns it.
struct BackendState {
  virtual ~BackendState() = default;
  virtual DeviceStats stats() const { return {}; }
};

// A device's executor of ops (ggml-backend's shape: supports, then compute).
class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* device() const = 0;  // the plan's device name it claims ("cpu")
  // Ok when this backend can run the op; otherwise why not.
  virtual Status supports(const PlanOp& op, OpKind kind) const = 0;
  virtual Status run(const ProgramOp& op, OpCall& call) = 0;
  // Once at load, after the program is bound: weight uploads and the like.
  virtual Status prepare(const ModelImpl& m, const Program& prog) { return Status::ok(); }
  // A backend that drives whole calls (the GPU's) runs every op of the program itself: its
  // own on its streams, the others' (through their run()) as host steps ordered with them, so
  // that a decode step can be one replayed CUDA graph. Without one, Session::forward walks
  // the ops.
  virtual bool drives_calls() const { return false; }
  // Tokens one run_call takes at most (Session::forward splits longer calls); all_logits:
  // the call computes logits for every token, not only the last.
  virtual int64_t max_call_tokens(bool all_logits) const { return INT64_MAX; }
  // Whether attention of `layer` keeps its KV cache here (the session allocates none on the
  // host for it).
  virtual bool owns_kv_cache(int64_t layer) const { return false; }
  virtual Status run_call(const Program& prog, OpCall& call, const OpObserver& observer) {
    return Error("backend '{}' does not drive calls", device());
  }
};

// The CPU backend over a loaded model (runtime/engine/cpu_backend.cpp).
std::unique_ptr<Backend> make_cpu_backend();
// The GPU backend (runtime/engine/cuda_backend.cpp) for a plan's GPU code; errors say why this
// host or build cannot run it and how to re-plan.
// float_gemv: EngineOptions::gpu_float_gemv.
Expected<std::unique_ptr<Backend>> make_cuda_backend(const std::vector<uint8_t>& gpu_code,
                                                     const std::string& plan_arch,
                                                     const ModelConfig& cfg, bool float_gemv);

struct Program {
  std::vector<ProgramOp> ops;
  std::vector<PlanBuffer> buffers;
  int logits_buffer = -1;  // the lm_head's output
};

// Binds `ops` to `backends` by device. Errors name the op: an unknown kind, a device no backend
// claims (a gpu op on a host or build without a GPU backend: re-plan for this host), an op a
// backend does not support, a plan without buffers (made by an older ktc), an input read
// before any op wrote it, a program without exactly one lm_head at its end.
// why_no_gpu: why no GPU backend is among `backends` (named in the error of a gpu op).
Expected<Program> build_program(const std::vector<PlanOp>& ops,
                                const std::vector<PlanBuffer>& buffers,
                                const std::vector<Backend*>& backends,
                                const std::string& why_no_gpu = "");

// The op list and buffers ktc emits for `cfg` with reference kernels on the CPU: the program
// of plan-less callers (unit tests, `eval --oracle`'s float32 model).
struct ReferenceProgram {
  std::vector<PlanOp> ops;
  std::vector<PlanBuffer> buffers;
};
ReferenceProgram reference_program(const ModelConfig& cfg);

}  // namespace ktx
