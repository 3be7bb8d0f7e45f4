// The CUDA backend: runs the plan's gpu ops with the kernels of its gpu_code and drives whole
// calls (step_plan.h): device ops on a device stream, the CPU's ops (embedding, routed experts,
// whatever the plan left there) on a host stream with the copies they need (handed off through
// mapped-memory flags, or as host functions: KTX_CUDA_HANDOFF), so the CPU's routed experts
// overlap the GPU's shared experts. Activations live in a device
// arena (one buffer per plan buffer, sized for max_call_tokens) and move to the host arena only
// where a CPU op reads them. A decode call (up to kGraphTokens tokens) is captured once per
// size into a CUDA graph and replayed: the position comes from device memory, the host steps
// read the current call through the session state, so one cudaGraphLaunch runs the whole step.
//
// Weights of gpu ops are uploaded at load as stored in the GGUF (the kernels read the blocks in
// place); one-row tensors (norm weights, biases) as F32. Calls with hooks or a profile run the
// same steps eagerly, synchronizing after each op (outputs downloaded for the hooks); calls
// with a profile only add timing events around each device op (graph nodes in a replayed
// call), so the profile shows each op kind's GPU time and the GPU's idle time is measured
// inside real steps; KTX_CUDA_GRAPH=0 turns graphs off, KTX_CUDA_DEBUG=1 too.
#include "runtime/engine/cuda_exec.h"

#if KTX_HAVE_CUDA

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <set>

#include "runtime/cuda/moe.h"

namespace ktx {
namespace {

using cuda::DevTensor;

// KTX_CUDA_HANDOFF: flags (the default) hands CPU ops off through mapped-memory flags driven by
// the calling thread; host runs them as host functions on CUDA's callback thread. Read per
// session. Lent H100 host, DeepSeek-V3 --layers 5 slice, tg64: flags 142.0 / 143.7 tok/s,
// host 127.5 / 129.2 (alternated in one call).
bool handoff_flags() {
  const char* v = std::getenv("KTX_CUDA_HANDOFF");
  return !(v && std::strcmp(v, "host") == 0);
}

// KTX_POOL_HOT=0: let the pool's workers sleep between a call's CPU jobs. By default they spin
// for the whole GPU-driven call: on a quiet host that took the same decode from 142-144 to
// 162-172 tok/s. On a host whose cores are busy with other work (measured with a compiler
// build beside it) spinning costs more than it saves (51-56 against 98 tok/s): set it to 0 there.
// KTX_CUDA_FUSE=0: one kernel per step where fused kernels exist (A/B runs, bisecting).
bool fusion_enabled() {
  const char* v = std::getenv("KTX_CUDA_FUSE");
  return !(v && std::strcmp(v, "0") == 0);
}

bool pool_hot_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("KTX_POOL_HOT");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(cuda::Library lib, cuda::Kernels k, cuda::AttnKernels attn, cuda::RouterKernels rk,
              const ModelConfig& cfg)
      : lib_(std::move(lib)), k_(std::move(k)), attn_(std::move(attn)), router_(std::move(rk)),
        cfg_(cfg), lookup_([this](const std::string& name) { return tensor(name); }) {
    moe_ = cuda::MoeKernels::bind(lib_);
  }

  // Float32 comparisons: float GEMVs, and the exact float GEMMs (no bf16 tensor-core forms).
  void set_float_gemv(bool on) {
    float_gemv_ = on;
    k_.set_mma(!on && k_.mma_on());
    moe_.set_mma(!on);
  }
  const char* device() const override { return "gpu"; }
  bool drives_calls() const override { return true; }
  // Calls that want only the last token's logits may take the plan's stream_chunk when it
  // streams experts (one copy of a layer's experts serves the whole call).
  int64_t max_call_tokens(bool all_logits) const override {
    return all_logits ? kMaxCallTokens : max_tok_;
  }
  bool owns_kv_cache(int64_t layer) const override { return attn_layers_.count(layer) > 0; }

  Status supports(const PlanOp& op, OpKind kind) const override {
    switch (kind) {
      case OpKind::rms_norm: case OpKind::add: case OpKind::dense_ffn: case OpKind::lm_head:
      case OpKind::shared_experts: case OpKind::router:
        return Status::ok();
      case OpKind::attention: {
        auto it = op.attrs.find("kv_cache");
        if (it != op.attrs.end() && it->second != "f16")
          return Error("the CUDA backend keeps an f16 KV cache, the plan asks for {}; re-plan "
                       "with ktc plan --kv-cache f16", it->second);
        return Status::ok();
      }
      default:
        return Error("the CUDA backend does not run {} ops; re-plan (ktc plan --gpu-ops, or "
                     "--gpu off)", op.kind);
    }
  }

  Status run(const ProgramOp& op, OpCall&) override {
    return Error("op '{}': gpu ops run inside the CUDA backend's calls only", op.name);
  }

  Status prepare(const ModelImpl& m, const Program& prog) override {
    int64_t n_up = 0;
    uint64_t bytes = 0;
    for (const ProgramOp& op : prog.ops) {
      if (op.backend != this) continue;
      for (const std::string& name : op.tensors) {
        if (weights_.count(name)) continue;
        KTX_RETURN_IF_ERROR(upload(m, name));
        bytes += weights_.at(name).buf.size();
        ++n_up;
      }
    }
    steps_ = plan_steps(prog, [&](const ProgramOp& op) { return op.backend == this; });
    for (const ProgramOp& op : prog.ops) {
      if (op.backend != this) continue;
      if (op.kind == OpKind::attention) attn_layers_.insert(op.layer);
      if (op.kind == OpKind::router) gpu_router_ = true;
    }
    if (!attn_layers_.empty()) {
      std::vector<float> f(m.rope_inv_freq.begin(), m.rope_inv_freq.end());
      KTX_ASSIGN_OR_RETURN(inv_freq_, cuda::DeviceBuffer::alloc(std::max<size_t>(f.size(), 1) * 4));
      KTX_RETURN_IF_ERROR(inv_freq_.upload(f.data(), f.size() * sizeof(float)));
    }
    for (const ProgramOp& op : prog.ops)
      if (op.backend == this && (op.kind == OpKind::dense_ffn || op.kind == OpKind::shared_experts))
        max_ff_ = std::max(max_ff_, m.w(op.tensors.at(0)).n_rows());
    if (cuda::cuda_debug())
      fmt::print(stderr, "ktx-run: cuda: {} tensors uploaded ({:.1f} MiB); call steps:\n{}", n_up,
                 bytes / 1048576.0, describe_steps(prog, steps_));
    return prepare_streaming(m, prog);
  }

  Status run_call(const Program& prog, OpCall& call, const OpObserver& observer) override;

 private:
  // A routed-experts op the plan streams: its three tensors in the mapped GGUF, where each
  // lands in a slot, and the shapes the kernels get (data pointers filled per slot).
  struct Streamed {
    int op = -1;
    int64_t min_tokens = 0;
    std::vector<cuda::ExpertStream::Range> ranges;  // gate, up, down (offset: in the slot)
    cuda::ExpertWeights w;                           // data: set per call from the slot
    uint64_t bytes = 0;
  };
  // Expert slots, staging and workspace of the plan's streamed ops (none: nothing).
  Status prepare_streaming(const ModelImpl& m, const Program& prog);
  // The streamed ops a call of T tokens runs on the GPU, in program order.
  std::vector<const Streamed*> streamed_for(int64_t T) const;
  // The step plan of calls that run these ops on the GPU as well (cached per set).
  const std::vector<Step>& steps_for(const Program& prog, const std::vector<const Streamed*>& s);
  Status run_streamed(const Streamed& sm, const ProgramOp& op, int slot, GpuSession& gs,
                      int64_t T, cudaStream_t st);

  struct Uploaded {
    cuda::DeviceBuffer buf;
    DevTensor t;
  };

  Status upload(const ModelImpl& m, const std::string& name) {
    const Weight* w = m.find(name);
    if (!w) return Error("gpu op tensor '{}' is not in the GGUF", name);
    const GGUFTensorInfo& info = w->info();
    Uploaded u;
    u.t.row_len = w->row_len();
    u.t.n_rows = w->n_rows();
    if (w->n_rows() == 1) {  // norm weights, biases: F32 for the kernels
      std::vector<float> row(static_cast<size_t>(w->row_len()));
      const float* p = w->row(0, row.data());
      KTX_ASSIGN_OR_RETURN(u.buf, cuda::DeviceBuffer::alloc(row.size() * sizeof(float)));
      KTX_RETURN_IF_ERROR(u.buf.upload(p, row.size() * sizeof(float)).with_context(name));
      u.t.type = GGMLType::F32;
      u.t.row_bytes = w->row_len() * 4;
    } else {
      KTX_ASSIGN_OR_RETURN(u.buf, cuda::DeviceBuffer::alloc(info.n_bytes));
      KTX_RETURN_IF_ERROR(u.buf.upload(info.data, info.n_bytes).with_context("uploading " + name));
      u.t.type = static_cast<GGMLType>(info.type);
      KTX_ASSIGN_OR_RETURN(uint64_t rb, ggml_row_bytes(u.t.type, u.t.row_len));
      u.t.row_bytes = static_cast<int64_t>(rb);
    }
    u.t.data = u.buf.get();
    weights_.emplace(name, std::move(u));
    return Status::ok();
  }

  Expected<DevTensor> tensor(const std::string& name) const {
    auto it = weights_.find(name);
    if (it == weights_.end()) return Error("cuda backend: tensor '{}' was not uploaded", name);
    return it->second.t;
  }

  // y [n_tok][rows] = x [n_tok][k] · Wᵀ: the GEMM for prefill batches (Kernels::linear), else
  // GEMVs of kGemvMaxTokens tokens, integer ones on x rounded into xq where the type has one.
  Status gemv(const DevTensor& w, const float* x, int64_t n_tok, float* y, cudaStream_t st,
              cuda::XQuant& xq) const {
    return k_.linear(w.type, w.data, w.row_bytes, x, w.row_len, y, w.n_rows, w.n_rows, w.row_len,
                     n_tok, st, float_gemv_ ? nullptr : &xq);
  }
  // Gate and up read one input: it is rounded once per token chunk when both take the integer
  // GEMV.
  Status gemv_pair(const DevTensor& a, const DevTensor& b, const float* x, int64_t n_tok,
                   float* ya, float* yb, cudaStream_t st, cuda::XQuant& xq) const {
    const bool gemm = k_.takes_gemm(a.type, n_tok) && k_.takes_gemm(b.type, n_tok);
    const bool shared = !gemm && !float_gemv_ && a.row_len == b.row_len && a.row_len <= xq.k_cap() &&
                        cuda::Kernels::gemv16_fits(a.type, a.data, a.row_bytes) &&
                        cuda::Kernels::gemv16_fits(b.type, b.data, b.row_bytes);
    if (!shared) {
      KTX_RETURN_IF_ERROR(gemv(a, x, n_tok, ya, st, xq));
      return gemv(b, x, n_tok, yb, st, xq);
    }
    for (int64_t t0 = 0; t0 < n_tok; t0 += cuda::kGemvMaxTokens) {
      const int64_t nt = std::min<int64_t>(cuda::kGemvMaxTokens, n_tok - t0);
      KTX_RETURN_IF_ERROR(k_.quantize_x(x + t0 * a.row_len, a.row_len, a.row_len, nt, xq, st));
      KTX_RETURN_IF_ERROR(k_.gemv16(a.type, a.data, a.row_bytes, xq, ya + t0 * a.n_rows, a.n_rows,
                                    a.n_rows, a.row_len, nt, st));
      KTX_RETURN_IF_ERROR(k_.gemv16(b.type, b.data, b.row_bytes, xq, yb + t0 * b.n_rows, b.n_rows,
                                    b.n_rows, b.row_len, nt, st));
    }
    return Status::ok();
  }

  // One gpu op of a call (device buffers of the session's arena).
  Status run_device_op(const ProgramOp& op, GpuSession& gs, int64_t T, int64_t first,
                       cudaStream_t st) const;
  // step_sync: synchronize after every op (observer calls); timed: timing events around
  // every device op (profiled calls), recorded as graph nodes when `capturing`.
  // streamed: the ops of this call that run as streamed experts (steps: their step plan).
  Status enqueue(const Program& prog, const std::vector<Step>& steps,
                 const std::vector<const Streamed*>& streamed, GpuSession& gs, int64_t T,
                 int64_t first, bool step_sync, bool timed, bool capturing,
                 const OpObserver& observer, OpCall& call);

  // The session's device state: arena, KV caches of GPU attention layers, workspaces.
  Expected<std::unique_ptr<GpuSession>> new_session(const Program& prog, int64_t n_ctx) const;

  cuda::Library lib_;
  cuda::Kernels k_;
  cuda::AttnKernels attn_;
  cuda::RouterKernels router_;
  ModelConfig cfg_;
  cuda::TensorLookup lookup_;
  cuda::DeviceBuffer inv_freq_;  // RoPE frequencies (YaRN applied) as float
  std::set<int64_t> attn_layers_;
  bool gpu_router_ = false;
  std::map<std::string, Uploaded> weights_;
  std::vector<Step> steps_;
  cuda::MoeKernels moe_;
  std::vector<Streamed> streamed_;  // program order
  std::map<std::vector<int>, std::vector<Step>> stream_steps_;
  std::unique_ptr<cuda::ExpertStream> expert_stream_;
  std::optional<cuda::MoeWorkspace> moe_ws_;
  std::mutex stream_mu_;      // one streamed call at a time (the slots and workspace)
  int64_t max_tok_ = kMaxCallTokens;  // the plan's stream_chunk when it streams
  bool float_gemv_ = false;  // EngineOptions::gpu_float_gemv
  bool fuse_ = fusion_enabled();  // KTX_CUDA_FUSE
  int64_t max_ff_ = 0;  // widest FFN hidden layer of the gpu ops (scratch per token)
};

Status CudaBackend::run_device_op(const ProgramOp& op, GpuSession& gs, int64_t T, int64_t first,
                                  cudaStream_t st) const {
  const int64_t D = cfg_.n_embd;
  float* out = gs.act(op.out);
  switch (op.kind) {
    case OpKind::rms_norm: {
      KTX_ASSIGN_OR_RETURN(DevTensor w, tensor(op.tensors.at(0)));
      return k_.rms_norm(gs.act(op.in[0]), D, static_cast<const float*>(w.data), out, D, T, D,
                         cfg_.rms_eps, st);
    }
    case OpKind::add:
      return k_.add(gs.act(op.in[0]), gs.act(op.in[1]), out, T * D, st);
    case OpKind::dense_ffn:
    case OpKind::shared_experts: {
      KTX_ASSIGN_OR_RETURN(DevTensor gate, tensor(op.tensors.at(0)));
      KTX_ASSIGN_OR_RETURN(DevTensor up, tensor(op.tensors.at(1)));
      KTX_ASSIGN_OR_RETURN(DevTensor down, tensor(op.tensors.at(2)));
      KTX_ASSIGN_OR_RETURN(float* g, gs.scratch(0, T * gate.n_rows));
      KTX_ASSIGN_OR_RETURN(float* u, gs.scratch(1, T * up.n_rows));
      const float* x = gs.act(op.in[0]);
      KTX_RETURN_IF_ERROR(gemv_pair(gate, up, x, T, g, u, st, *gs.xq));
      KTX_RETURN_IF_ERROR(k_.silu_mul(g, u, g, T * gate.n_rows, st));
      KTX_RETURN_IF_ERROR(gemv(down, g, T, out, st, *gs.xq));
      if (op.kind == OpKind::shared_experts && cfg_.shexp_gate)  // Qwen2-MoE's sigmoid gate
        return cuda::shexp_gate(k_, router_, cfg_, op.layer, lookup_, x, T, out, *gs.router_ws, st);
      return Status::ok();
    }
    case OpKind::router:
      return cuda::router_layer(k_, router_, cfg_, op.layer, lookup_, gs.act(op.in[0]), T,
                                gs.route_ids(op.out), gs.route_weights(op.out), *gs.router_ws, st);
    case OpKind::attention: {
      GpuSession::LayerKv& kv = gs.kv.at(op.layer);
      const auto layer = cfg_.attn == AttnKind::MLA ? cuda::mla_attention_layer
                                                    : cuda::gqa_attention_layer;
      return layer(k_, attn_, cfg_, op.layer, lookup_, inv_freq_.as<float>(), gs.act(op.in[0]),
                   out, kv.k.get(), kv.v.get(), gs.position(), T, *gs.attn_ws, st);
    }
    case OpKind::lm_head: {
      KTX_ASSIGN_OR_RETURN(DevTensor w, tensor(op.tensors.at(0)));
      return gemv(w, gs.act(op.in[0]) + first * D, T - first, out, st, *gs.xq);
    }
    default:
      return Error("op '{}': the CUDA backend does not run {} ops", op.name, op_kind_name(op.kind));
  }
}

// The steps of one call on the session's two streams (step_plan.h). step_sync: synchronize
// after every op, time it into the call's profile and hand its output to the observer.
Status CudaBackend::enqueue(const Program& prog, const std::vector<Step>& steps_,
                            const std::vector<const Streamed*>& streamed, GpuSession& gs,
                            int64_t T, int64_t first, bool step_sync, bool timed, bool capturing,
                            const OpObserver& observer, OpCall& call) {
  cudaStream_t streams[2] = {gs.device_stream(), gs.host_stream()};
  KTX_RETURN_IF_ERROR(gs.begin());
  // Streamed experts: each layer's copy is staged when the enqueuing reaches it, so it runs
  // while the GPU still computes the layer before (already enqueued) from the other slot;
  // ExpertStream's events make a copy wait for its slot's previous user.
  size_t next_streamed = 0;
  bool head_done = false;  // the lm_head has run (its buffer now holds the logits)
  for (size_t i = 0; i < steps_.size(); ++i) {
    const Step& stp = steps_[i];
    cudaStream_t st = streams[stp.stream];
    for (int w : stp.waits) KTX_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(st, gs.event(w), 0));
    const ProgramOp* op = stp.op >= 0 ? &prog.ops[static_cast<size_t>(stp.op)] : nullptr;
    OpTimer timer(step_sync && op ? call.s.profile : nullptr, op ? op_kind_name(op->kind) : "");
    // A residual add whose sum the next step normalizes: one kernel (ktx_add_rms_norm) for
    // both, with both steps' events recorded after it. Not in profiled or step-synced calls,
    // which time or observe each op alone.
    if (stp.kind == Step::Kind::device_op && op->kind == OpKind::add && fuse_ && !step_sync &&
        !timed && i + 1 < steps_.size()) {
      const Step& nx = steps_[i + 1];
      const ProgramOp* nop = nx.op >= 0 ? &prog.ops[static_cast<size_t>(nx.op)] : nullptr;
      if (nx.kind == Step::Kind::device_op && nx.stream == stp.stream && nx.waits.empty() && nop &&
          nop->kind == OpKind::rms_norm && nop->in.at(0) == op->out) {
        KTX_ASSIGN_OR_RETURN(DevTensor w, tensor(nop->tensors.at(0)));
        const int64_t D = cfg_.n_embd;
        const float *a = gs.act(op->in[0]), *b = gs.act(op->in[1]);
        float *sum = gs.act(op->out), *y = gs.act(nop->out);
        const auto* wp = static_cast<const float*>(w.data);
        if (k_.add_rms_norm_fits(a, b, sum, wp, y, D, D)) {
          KTX_RETURN_IF_ERROR(k_.add_rms_norm(a, b, sum, wp, y, D, T, D, cfg_.rms_eps, st)
                                  .with_context(op->name + " + " + nop->name));
          if (stp.signals) KTX_CUDA_RETURN_IF_ERROR(cudaEventRecord(gs.event(static_cast<int>(i)), st));
          if (nx.signals) KTX_CUDA_RETURN_IF_ERROR(cudaEventRecord(gs.event(static_cast<int>(i + 1)), st));
          ++i;
          continue;
        }
      }
    }
    if (op && op->kind == OpKind::lm_head) head_done = true;
    switch (stp.kind) {
      case Step::Kind::device_op:
        if (timed) KTX_RETURN_IF_ERROR(gs.time_mark(static_cast<int>(i), false, st, capturing));
        if (op->kind == OpKind::routed_experts) {
          if (next_streamed >= streamed.size() || streamed[next_streamed]->op != stp.op)
            return Error("op '{}': routed experts on the GPU that the call does not stream", op->name);
          const int slot = static_cast<int>(next_streamed % 2);
          KTX_RETURN_IF_ERROR(expert_stream_->load(slot, streamed[next_streamed]->ranges)
                                  .with_context(op->name + ": staging its experts"));
          KTX_RETURN_IF_ERROR(run_streamed(*streamed[next_streamed], *op, slot, gs, T, st).with_context(op->name));
          ++next_streamed;
        } else {
          KTX_RETURN_IF_ERROR(run_device_op(*op, gs, T, first, st).with_context(op->name));
        }
        if (timed) KTX_RETURN_IF_ERROR(gs.time_mark(static_cast<int>(i), true, st, capturing));
        break;
      case Step::Kind::host_op:
        KTX_RETURN_IF_ERROR(gs.host_op(stp.op, st));
        break;
      case Step::Kind::to_device:
      case Step::Kind::to_host:
        // The lm_head's output only after it ran: earlier copies of its buffer carry
        // activations (ktc reuses the buffer; qwen2moe's embedding lands in it).
        KTX_RETURN_IF_ERROR(gs.copy(prog, stp.buffer, T, first, stp.kind == Step::Kind::to_device,
                                    head_done && stp.buffer == prog.logits_buffer, st));
        break;
    }
    if (stp.signals) KTX_CUDA_RETURN_IF_ERROR(cudaEventRecord(gs.event(static_cast<int>(i)), st));
    if (!step_sync || !op) continue;
    KTX_RETURN_IF_ERROR(gs.sync());
    timer.stop();
    if (!observer || op->kind == OpKind::router || op->kind == OpKind::lm_head) continue;
    float* host = call.arena.act[static_cast<size_t>(op->out)].data();
    if (stp.kind == Step::Kind::device_op)
      KTX_RETURN_IF_ERROR(gs.download_act(op->out, T * (op->out == prog.logits_buffer
                                                            ? cfg_.n_embd
                                                            : prog.buffers[static_cast<size_t>(op->out)].width),
                                          host));
    observer(*op, host);
  }
  return gs.end();
}

// KTX_CUDA_STREAM_MIN=N: the layers the plan streams do so from N tokens per call (at least
// kGraphTokens + 1) instead of their stream_min_tokens: eval and tests force the streamed path
// on short prompts with it.
int64_t stream_min_override() {
  const char* v = std::getenv("KTX_CUDA_STREAM_MIN");
  if (!v || !*v) return 0;
  char* end = nullptr;
  const long long n = std::strtoll(v, &end, 10);
  return end != v && *end == '\0' && n > 0 ? n : 0;
}

Status CudaBackend::prepare_streaming(const ModelImpl& m, const Program& prog) {
  int64_t chunk = 0;
  const int64_t forced = stream_min_override();
  for (size_t i = 0; i < prog.ops.size(); ++i) {
    const ProgramOp& op = prog.ops[i];
    if (op.stream_min_tokens <= 0) continue;
    Streamed sm;
    sm.op = static_cast<int>(i);
    sm.min_tokens = std::max<int64_t>(forced > 0 ? forced : op.stream_min_tokens, kGraphTokens + 1);
    chunk = std::max(chunk, op.stream_chunk);
    const int64_t E = cfg_.n_expert;
    sm.w.n_expert = E;
    cuda::ExpertMatrix* mats[3] = {&sm.w.gate, &sm.w.up, &sm.w.down};
    const char* parts[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    size_t off = 0;
    for (int j = 0; j < 3; ++j) {
      auto name = std::find_if(op.tensors.begin(), op.tensors.end(), [&](const std::string& t) {
        return t.find(parts[j]) != std::string::npos;
      });
      if (name == op.tensors.end())
        return Error("plan op '{}' streams its experts but names no {} tensor", op.name, parts[j]);
      const Weight* w = m.find(*name);
      if (!w) return Error("plan op '{}': tensor '{}' is not in the GGUF", op.name, *name);
      const GGUFTensorInfo& info = w->info();
      if (info.ne[2] != E || info.ne[3] != 1)
        return Error("plan op '{}': {} is {}, not {} experts of matrices", op.name, *name,
                     info.shape_str(), E);
      if (!moe_.has(info.type))
        return Error("plan op '{}' streams {} experts, for which the plan's GPU code has no "
                     "expert GEMM (made by an older ktc?); re-plan",
                     op.name, ggml_type_name(static_cast<uint32_t>(info.type)));
      KTX_ASSIGN_OR_RETURN(uint64_t rb, ggml_row_bytes(info.type, info.ne[0]));
      cuda::ExpertMatrix& mt = *mats[j];
      mt.type = info.type;
      mt.k = info.ne[0];
      mt.rows = info.ne[1];
      mt.row_bytes = static_cast<int64_t>(rb);
      mt.expert_bytes = mt.rows * mt.row_bytes;
      sm.ranges.push_back({info.data, info.n_bytes, off});
      sm.bytes += info.n_bytes;
      off += (info.n_bytes + 255) / 256 * 256;
    }
    if (sm.w.gate.rows != cfg_.n_ff_exp || sm.w.gate.k != cfg_.n_embd)
      return Error("plan op '{}': expert matrices are {} x {}, the model's {} x {}", op.name,
                   sm.w.gate.rows, sm.w.gate.k, cfg_.n_ff_exp, cfg_.n_embd);
    streamed_.push_back(std::move(sm));
  }
  if (streamed_.empty()) return Status::ok();
  max_tok_ = std::max<int64_t>(kMaxCallTokens, chunk);
  size_t slot_bytes = 0;
  uint64_t total = 0;
  for (const Streamed& sm : streamed_) {
    slot_bytes = std::max(slot_bytes, sm.ranges.back().offset + sm.ranges.back().bytes);
    total += sm.bytes;
  }
  int copy_threads = 0;
  if (const char* v = std::getenv("KTX_STREAM_COPY_THREADS"); v && *v) copy_threads = std::atoi(v);
  auto es = cuda::ExpertStream::create(slot_bytes, 2, copy_threads);
  if (!es)
    return es.status().with_context(fmt::format(
        "streaming experts: two slots of {:.2f} GiB (ktc plan --stream off, or a smaller "
        "--vram-budget for the rest)", slot_bytes / 1073741824.0));
  expert_stream_ = std::move(*es);
  auto ws = cuda::MoeWorkspace::create(max_tok_ * cfg_.n_expert_used, cfg_.n_embd, cfg_.n_ff_exp,
                                       cfg_.n_expert);
  if (!ws) return ws.status().with_context("streaming experts: the expert workspace");
  moe_ws_.emplace(std::move(*ws));
  fmt::print(stderr, "ktx-run: cuda: {} layers ({:.2f} GiB of experts) stream to the GPU in calls "
             "of {} tokens and more, up to {} per call; slots 2 x {:.2f} GiB, workspace {:.2f} "
             "GiB, {} MiB pinned staging filled by {} threads\n", streamed_.size(),
             total / 1073741824.0, streamed_.front().min_tokens, max_tok_, slot_bytes / 1073741824.0,
             moe_ws_->buf.size() / 1073741824.0, expert_stream_->staging_bytes() >> 20,
             expert_stream_->copy_threads());
  return Status::ok();
}

std::vector<const CudaBackend::Streamed*> CudaBackend::streamed_for(int64_t T) const {
  std::vector<const Streamed*> out;
  for (const Streamed& sm : streamed_)
    if (T >= sm.min_tokens) out.push_back(&sm);
  return out;
}

const std::vector<Step>& CudaBackend::steps_for(const Program& prog,
                                                const std::vector<const Streamed*>& s) {
  std::vector<int> key;
  for (const Streamed* sm : s) key.push_back(sm->op);
  auto it = stream_steps_.find(key);
  if (it != stream_steps_.end()) return it->second;
  const std::set<int> ops(key.begin(), key.end());
  const ProgramOp* base = prog.ops.data();
  auto steps = plan_steps(prog, [&](const ProgramOp& op) {
    return op.backend == this || ops.count(static_cast<int>(&op - base)) != 0;
  });
  if (cuda::cuda_debug())
    fmt::print(stderr, "ktx-run: cuda: steps of calls streaming {} layers:\n{}", key.size(),
               describe_steps(prog, steps));
  return stream_steps_.emplace(key, std::move(steps)).first->second;
}

Status CudaBackend::run_streamed(const Streamed& sm, const ProgramOp& op, int slot,
                                 GpuSession& gs, int64_t T, cudaStream_t st) {
  cuda::ExpertWeights w = sm.w;
  auto* base = static_cast<const char*>(expert_stream_->slot(slot));
  cuda::ExpertMatrix* mats[3] = {&w.gate, &w.up, &w.down};
  for (size_t j = 0; j < 3; ++j) mats[j]->data = base + sm.ranges[j].offset;
  KTX_RETURN_IF_ERROR(expert_stream_->acquire(slot, st));
  const int64_t D = cfg_.n_embd;
  KTX_RETURN_IF_ERROR(moe_.run(k_, w, gs.act(op.in[0]), D, gs.route_ids(op.in[1]),
                               gs.route_weights(op.in[1]), T, cfg_.n_expert_used, gs.act(op.out),
                               D, *moe_ws_, st));
  return expert_stream_->release(slot, st);
}

Status CudaBackend::run_call(const Program& prog, OpCall& call, const OpObserver& observer) {
  SessionCache& cache = call.cache;
  if (!cache.driver_state) {
    KTX_ASSIGN_OR_RETURN(std::unique_ptr<GpuSession> gs, new_session(prog, call.n_ctx));
    cache.driver_state = std::move(gs);
  }
  GpuSession& gs = static_cast<GpuSession&>(*cache.driver_state);
  const int64_t T = call.s.n_tok, first = call.first_logit;
  if (gpu_router_ && (call.s.route_record || call.s.route_replay))
    return Error("the plan routes on the GPU, and recording or replaying expert choices (eval "
                 "--oracle) needs the routers on the CPU; re-plan with ktc plan --gpu-ops "
                 "leaving out router");
  if (call.s.n_past + T > gs.n_ctx)
    return Error("cuda backend: positions {}..{} past the GPU KV cache of {} positions",
                 call.s.n_past, call.s.n_past + T, gs.n_ctx);
  if (T > max_tok_ || T - first > gs.max_logits())
    return Error("cuda backend: a call of {} tokens, logits for {} (at most {}, logits for {})", T,
                 T - first, max_tok_, gs.max_logits());
  // Routed experts the plan streams for calls this long run on the GPU: their own step plan,
  // the slots held for the call, always enqueued eagerly.
  const std::vector<const Streamed*> streamed = streamed_for(T);
  std::unique_lock<std::mutex> stream_lock(stream_mu_, std::defer_lock);
  if (!streamed.empty()) stream_lock.lock();
  const std::vector<Step>& steps = streamed.empty() ? steps_ : steps_for(prog, streamed);
  if (!streamed.empty()) KTX_RETURN_IF_ERROR(gs.ensure_steps(steps));
  KTX_RETURN_IF_ERROR(gs.bind_host(prog, call.arena));
  // The call's CPU ops are one pool job per layer with the GPU's work between: keep the
  // workers spinning for the call so each job finds them awake (pool_hot_enabled).
  std::optional<cpu::ThreadPool::Hot> hot;
  // Not in calls that stream experts: their CPU work is the staging copies, whose threads
  // need the cores the spinning workers would hold.
  if (pool_hot_enabled() && streamed.empty()) hot.emplace(call.s.pool);
  const bool step_sync = static_cast<bool>(observer);
  // A profile without an observer times device ops with events (no host sync between ops,
  // graphs as usual); with an observer every op is synchronized and timed on the host.
  const bool timed = call.s.profile && !step_sync;
  if (timed) KTX_RETURN_IF_ERROR(gs.ensure_timing(steps));
  const auto t0 = std::chrono::steady_clock::now();
  gs.set_call(&call);
  gs.set_timing(timed);
  Status st = Status::ok();
  // Flags only for graph replays: an eagerly enqueued call may launch thousands of kernels (a
  // long prefill's GEMVs per 8 tokens), and once the GPU waits for a CPU op the launch queue
  // fills, the enqueuing thread blocks in cudaLaunchKernel and never drives the op. Host
  // functions run on CUDA's callback thread, so they need no free enqueuing thread.
  const bool eager = step_sync || T > kGraphTokens || !graphs_enabled() || !streamed.empty();
  gs.begin_call(!eager);
  if (eager) {
    st = enqueue(prog, steps, streamed, gs, T, first, step_sync, timed, false, observer, call);
    if (st) st = gs.sync();
  } else {
    st = gs.replay(T, first, timed, [&]() {
      return enqueue(prog, steps, streamed, gs, T, first, false, timed, true, observer, call);
    });
  }
  if (!streamed.empty()) {
    uint64_t b = 0;
    for (const Streamed* sm : streamed) b += sm->bytes;
    gs.add_streamed(static_cast<int64_t>(streamed.size()), b);
  }
  gs.set_call(nullptr);
  gs.set_timing(false);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  gs.add_call(sec);
  KTX_RETURN_IF_ERROR(st);
  if (timed) {
    KTX_ASSIGN_OR_RETURN(double dev, gs.collect_timing(steps, call.s.profile));
    gs.add_timed_call(sec, dev);
  }
  return gs.take_host_error();
}

Expected<std::unique_ptr<GpuSession>> CudaBackend::new_session(const Program& prog,
                                                              int64_t n_ctx) const {
  KTX_ASSIGN_OR_RETURN(std::unique_ptr<GpuSession> gs,
                       GpuSession::create(prog, steps_, max_tok_, kMaxCallTokens, cfg_.n_embd,
                                          max_tok_ * max_ff_));
  gs->n_ctx = n_ctx;
  // KTX_CUDA_DEBUG synchronizes after every launch, which a flag wait would never survive.
  if (handoff_flags() && k_.has_handoff() && !cuda::cuda_debug()) gs->use_flags(&k_);
  const KvWidths w = kv_widths(cfg_);
  for (int64_t layer : attn_layers_) {
    GpuSession::LayerKv& kv = gs->kv[layer];
    KTX_ASSIGN_OR_RETURN(kv.k, cuda::DeviceBuffer::alloc(static_cast<size_t>(n_ctx * w.k) * 2));
    KTX_ASSIGN_OR_RETURN(kv.v, cuda::DeviceBuffer::alloc(static_cast<size_t>(n_ctx * w.v) * 2));
  }
  if (!attn_layers_.empty()) {
    KTX_ASSIGN_OR_RETURN(cuda::AttnWorkspace ws,
                         cuda::AttnWorkspace::create(cfg_, max_tok_, n_ctx));
    gs->attn_ws = std::make_unique<cuda::AttnWorkspace>(std::move(ws));
    gs->attn_ws->float_gemv = float_gemv_;
    gs->attn_ws->unfused = !fuse_;
  }
  KTX_ASSIGN_OR_RETURN(cuda::RouterWorkspace rws, cuda::RouterWorkspace::create(cfg_, max_tok_));
  gs->router_ws = std::make_unique<cuda::RouterWorkspace>(std::move(rws));
  KTX_ASSIGN_OR_RETURN(cuda::XQuant xq, cuda::XQuant::alloc((std::max(cfg_.n_embd, max_ff_) + 31) / 32 * 32));
  gs->xq = std::make_unique<cuda::XQuant>(std::move(xq));
  return gs;
}

}  // namespace

Expected<std::unique_ptr<Backend>> make_cuda_backend(const std::vector<uint8_t>& gpu_code,
                                                     const std::string& plan_arch,
                                                     const ModelConfig& cfg, bool float_gemv) {
  if (cuda::device_count() == 0)
    return Error("the plan runs ops on a GPU ({}), and this host has none", plan_arch);
  KTX_ASSIGN_OR_RETURN(std::string arch, cuda::device_arch(0));
  if (arch != plan_arch)
    return Error("the plan's GPU code is for {}, this host's GPU 0 is {}", plan_arch, arch);
  if (gpu_code.empty())
    return Error("the plan runs ops on the GPU but carries no GPU code (made by an older ktc)");
  KTX_ASSIGN_OR_RETURN(cuda::Library lib, cuda::Library::load(gpu_code));
  KTX_ASSIGN_OR_RETURN(cuda::Kernels k, cuda::Kernels::bind(lib));
  KTX_ASSIGN_OR_RETURN(cuda::AttnKernels attn, cuda::AttnKernels::bind(lib));
  KTX_ASSIGN_OR_RETURN(cuda::RouterKernels rk, cuda::RouterKernels::bind(lib));
  auto b = std::make_unique<CudaBackend>(std::move(lib), std::move(k), std::move(attn), std::move(rk), cfg);
  b->set_float_gemv(float_gemv);
  return std::unique_ptr<Backend>(std::move(b));
}


}  // namespace ktx

#else  // no CUDA toolkit at build time

namespace ktx {

Expected<std::unique_ptr<Backend>> make_cuda_backend(const std::vector<uint8_t>&,
                                                     const std::string& plan_arch,
                                                     const ModelConfig&, bool) {
  return Error("the plan runs ops on a GPU ({}), and this ktx-run was built without CUDA",
               plan_arch);
}


}  // namespace ktx

#endif
