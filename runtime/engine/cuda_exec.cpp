// runtime/engine/cuda_exec.h.
#include "runtime/engine/cuda_exec.h"

#if KTX_HAVE_CUDA

#include <chrono>
#include <cstdlib>
#include <cstring>

namespace ktx {

bool graphs_enabled() {
  static const bool on = [] {
    const char* g = std::getenv("KTX_CUDA_GRAPH");
    return !(g && std::strcmp(g, "0") == 0) && !cuda::cuda_debug();
  }();
  return on;
}

namespace {

// Floats a buffer holds for max_tok tokens; the logits buffer's rows for max_logits tokens
// (it may hold [T][n_embd] earlier).
int64_t buffer_floats(const Program& prog, size_t b, int64_t max_tok, int64_t max_logits,
                      int64_t n_embd) {
  if (static_cast<int>(b) == prog.logits_buffer)
    return std::max(max_logits * prog.buffers[b].width, max_tok * n_embd);
  return max_tok * std::max<int64_t>(prog.buffers[b].width, n_embd);
}

}  // namespace

Expected<std::unique_ptr<GpuSession>> GpuSession::create(const Program& prog,
                                                        const std::vector<Step>& steps,
                                                        int64_t max_tok, int64_t max_logits,
                                                        int64_t n_embd, int64_t scratch_floats) {
  std::unique_ptr<GpuSession> gs(new GpuSession());
  gs->prog_ = &prog;
  gs->max_tok_ = max_tok;
  gs->max_logits_ = max_logits;
  gs->n_embd_ = n_embd;
  for (cudaStream_t& s : gs->streams_)
    KTX_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  gs->events_.assign(steps.size(), nullptr);
  for (size_t i = 0; i < steps.size(); ++i)
    if (steps[i].signals)
      KTX_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&gs->events_[i], cudaEventDisableTiming));
  KTX_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&gs->fork_, cudaEventDisableTiming));
  KTX_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&gs->join_, cudaEventDisableTiming));
  // The host waits for a call on these, sleeping: a thread spinning in cudaStreamSynchronize
  // (the runtime's default when CPUs outnumber contexts) would take a core from the expert
  // workers that run inside the call.
  for (cudaEvent_t& e : gs->done_)
    KTX_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&e, cudaEventDisableTiming | cudaEventBlockingSync));

  // Device buffers for what device steps and copies touch.
  const size_t nb = prog.buffers.size();
  std::vector<bool> on_device(nb, false);
  for (const Step& st : steps) {
    if (st.kind == Step::Kind::to_device || st.kind == Step::Kind::to_host) on_device[st.buffer] = true;
    if (st.kind == Step::Kind::device_op) {
      const ProgramOp& op = prog.ops[static_cast<size_t>(st.op)];
      on_device[op.out] = true;
      for (int b : op.in) on_device[b] = true;
    }
  }
  gs->act_.resize(nb);
  gs->ids_.resize(nb);
  gs->weights_.resize(nb);
  for (size_t b = 0; b < nb; ++b) {
    if (!on_device[b]) continue;
    if (prog.buffers[b].kind == "route") {
      const size_t n = static_cast<size_t>(max_tok * prog.buffers[b].width);
      KTX_ASSIGN_OR_RETURN(gs->ids_[b], cuda::DeviceBuffer::alloc(n * sizeof(int32_t)));
      KTX_ASSIGN_OR_RETURN(gs->weights_[b], cuda::DeviceBuffer::alloc(n * sizeof(float)));
    } else {
      const size_t n = static_cast<size_t>(buffer_floats(prog, b, max_tok, max_logits, n_embd));
      KTX_ASSIGN_OR_RETURN(gs->act_[b], cuda::DeviceBuffer::alloc(n * sizeof(float)));
    }
  }
  for (int i = 0; i < 2 && scratch_floats > 0; ++i) {
    KTX_ASSIGN_OR_RETURN(cuda::DeviceBuffer s,
                         cuda::DeviceBuffer::alloc(static_cast<size_t>(scratch_floats) * sizeof(float)));
    gs->scratch_.push_back(std::move(s));
  }
  KTX_ASSIGN_OR_RETURN(gs->pos_dev_, cuda::DeviceBuffer::alloc(sizeof(int32_t)));
  KTX_CUDA_RETURN_IF_ERROR(cudaMallocHost(reinterpret_cast<void**>(&gs->pos_host_), sizeof(int32_t)));
  *gs->pos_host_ = 0;
  gs->host_args_.resize(prog.ops.size());
  for (size_t i = 0; i < prog.ops.size(); ++i) gs->host_args_[i] = {gs.get(), static_cast<int>(i)};
  gs->flag_index_.assign(prog.ops.size(), -1);
  for (const Step& st : steps)
    if (st.kind == Step::Kind::host_op) {
      gs->flag_index_[static_cast<size_t>(st.op)] = 1 + 2 * static_cast<int>(gs->host_order_.size());
      gs->host_order_.push_back(st.op);
    }
  const size_t words = 1 + 2 * gs->host_order_.size();
  KTX_CUDA_RETURN_IF_ERROR(cudaHostAlloc(reinterpret_cast<void**>(&gs->flags_host_),
                                         words * sizeof(unsigned),
                                         cudaHostAllocMapped | cudaHostAllocPortable));
  std::memset(gs->flags_host_, 0, words * sizeof(unsigned));
  KTX_CUDA_RETURN_IF_ERROR(cudaHostGetDevicePointer(reinterpret_cast<void**>(&gs->flags_dev_),
                                                    gs->flags_host_, 0));
  return gs;
}

GpuSession::~GpuSession() {
  if (streams_[0]) cudaStreamSynchronize(streams_[0]);
  if (streams_[1]) cudaStreamSynchronize(streams_[1]);
  for (auto& [key, g] : graphs_) cudaGraphExecDestroy(g);
  for (void* p : registered_)
    if (p) cudaHostUnregister(p);
  for (cudaEvent_t e : events_)
    if (e) cudaEventDestroy(e);
  if (fork_) cudaEventDestroy(fork_);
  if (join_) cudaEventDestroy(join_);
  for (cudaEvent_t e : done_)
    if (e) cudaEventDestroy(e);
  for (cudaEvent_t e : mark_begin_)
    if (e) cudaEventDestroy(e);
  for (cudaEvent_t e : mark_end_)
    if (e) cudaEventDestroy(e);
  if (pos_host_) cudaFreeHost(pos_host_);
  if (flags_host_) cudaFreeHost(flags_host_);
  for (cudaStream_t s : streams_)
    if (s) cudaStreamDestroy(s);
}

Status GpuSession::ensure_steps(const std::vector<Step>& steps) {
  if (events_.size() < steps.size()) events_.resize(steps.size(), nullptr);
  for (size_t i = 0; i < steps.size(); ++i)
    if (steps[i].signals && !events_[i])
      KTX_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&events_[i], cudaEventDisableTiming));
  auto need = [&](int b) -> Status {
    const size_t i = static_cast<size_t>(b);
    if (prog_->buffers[i].kind == "route") {
      if (ids_[i].get()) return Status::ok();
      const size_t n = static_cast<size_t>(max_tok_ * prog_->buffers[i].width);
      KTX_ASSIGN_OR_RETURN(ids_[i], cuda::DeviceBuffer::alloc(n * sizeof(int32_t)));
      KTX_ASSIGN_OR_RETURN(weights_[i], cuda::DeviceBuffer::alloc(n * sizeof(float)));
    } else if (!act_[i].get()) {
      const size_t n = static_cast<size_t>(buffer_floats(*prog_, i, max_tok_, max_logits_, n_embd_));
      KTX_ASSIGN_OR_RETURN(act_[i], cuda::DeviceBuffer::alloc(n * sizeof(float)));
    }
    return Status::ok();
  };
  for (const Step& st : steps) {
    if (st.kind == Step::Kind::to_device || st.kind == Step::Kind::to_host) {
      KTX_RETURN_IF_ERROR(need(st.buffer));
    } else if (st.kind == Step::Kind::device_op) {
      const ProgramOp& op = prog_->ops[static_cast<size_t>(st.op)];
      KTX_RETURN_IF_ERROR(need(op.out));
      for (int b : op.in) KTX_RETURN_IF_ERROR(need(b));
    }
  }
  return Status::ok();
}

Expected<float*> GpuSession::scratch(int slot, int64_t n) const {
  if (slot < 0 || slot >= static_cast<int>(scratch_.size()) ||
      scratch_[static_cast<size_t>(slot)].size() < static_cast<size_t>(n) * sizeof(float))
    return Error("cuda backend: scratch slot {} holds fewer than {} floats", slot, n);
  return scratch_[static_cast<size_t>(slot)].as<float>();
}

Status GpuSession::bind_host(const Program& prog, Arena& arena) {
  // The host arrays copies touch, in a fixed order: act buffers, then route ids and weights.
  std::vector<std::pair<void*, size_t>> want;
  for (size_t b = 0; b < prog.buffers.size(); ++b) {
    if (prog.buffers[b].kind == "route") {
      if (!ids_[b].get()) continue;
      const size_t n = static_cast<size_t>(max_tok_ * prog.buffers[b].width);
      arena.route_ids[b].reserve(n);
      arena.route_weights[b].reserve(n);
      want.emplace_back(arena.route_ids[b].data(), n * sizeof(int32_t));
      want.emplace_back(arena.route_weights[b].data(), n * sizeof(float));
    } else {
      if (!act_[b].get()) continue;
      const size_t n = static_cast<size_t>(buffer_floats(prog, b, max_tok_, max_logits_, n_embd_));
      arena.act[b].reserve(n);
      want.emplace_back(arena.act[b].data(), n * sizeof(float));
    }
  }
  bool same = want.size() == registered_.size();
  for (size_t i = 0; same && i < want.size(); ++i) same = want[i].first == registered_[i];
  if (same) return Status::ok();
  for (auto& [key, g] : graphs_) cudaGraphExecDestroy(g);
  graphs_.clear();
  for (void* p : registered_)
    if (p) cudaHostUnregister(p);
  registered_.clear();
  for (const auto& [p, bytes] : want) {
    KTX_CUDA_RETURN_IF_ERROR(cudaHostRegister(p, bytes, cudaHostRegisterPortable));
    registered_.push_back(p);
  }
  return Status::ok();
}

void GpuSession::set_call(OpCall* call) {
  call_ = call;
  if (call) *pos_host_ = static_cast<int32_t>(call->s.n_past);
}

Status GpuSession::begin() {
  KTX_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(pos_dev_.get(), pos_host_, sizeof(int32_t),
                                           cudaMemcpyHostToDevice, device_stream()));
  KTX_CUDA_RETURN_IF_ERROR(cudaEventRecord(fork_, device_stream()));
  KTX_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(host_stream(), fork_, 0));
  return Status::ok();
}

Status GpuSession::end() {
  KTX_CUDA_RETURN_IF_ERROR(cudaEventRecord(join_, host_stream()));
  KTX_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(device_stream(), join_, 0));
  return Status::ok();
}

void GpuSession::run_host(void* arg) {
  const HostArg* a = static_cast<const HostArg*>(arg);
  a->gs->run_host_op(a->op);
}

void GpuSession::run_host_op(int op_index) {
  GpuSession& gs = *this;
  if (!gs.host_error_ || !gs.call_) return;  // an earlier step failed: skip the rest
  const ProgramOp& op = gs.prog_->ops[static_cast<size_t>(op_index)];
  const auto t0 = std::chrono::steady_clock::now();
  Status st = op.backend->run(op, *gs.call_);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  gs.stats_.host_seconds += sec;
  // A profiled call's host ops are timed here; the enqueuing thread touches the profile only
  // after the call's sync, so the two never write it at once.
  if (OpProfile* p = gs.call_->s.profile; p && gs.timing_) {
    OpProfile::Entry& e = p->by_kind[std::string(op_kind_name(op.kind)) + " (cpu)"];
    e.seconds += sec;
    ++e.calls;
  }
  if (!st) gs.host_error_ = st.with_context(op.name);
}

Status GpuSession::host_op(int op, cudaStream_t st) {
  if (flags_on()) {
    const int f = flag_index_[static_cast<size_t>(op)];
    KTX_RETURN_IF_ERROR(flag_kernels_->flag_set(flags_dev_, f, st));
    return flag_kernels_->flag_wait(flags_dev_, f + 1, st);
  }
  KTX_CUDA_RETURN_IF_ERROR(cudaLaunchHostFunc(st, &GpuSession::run_host, &host_args_[static_cast<size_t>(op)]));
  return Status::ok();
}

void GpuSession::begin_call(bool flags) {
  call_flags_ = flags && flag_kernels_ != nullptr;
  if (++seq_ == 0) ++seq_;  // 0 is the words' initial value
  __atomic_store_n(&flags_host_[0], seq_, __ATOMIC_RELEASE);
}

void GpuSession::release_host_ops() {
  if (!flags_on()) return;
  for (size_t i = 0; i < host_order_.size(); ++i)
    __atomic_store_n(&flags_host_[2 + 2 * i], seq_, __ATOMIC_RELEASE);
}

Status GpuSession::drive_host_ops() {
  if (!flags_on()) return Status::ok();
  using clock = std::chrono::steady_clock;
  for (size_t i = 0; i < host_order_.size(); ++i) {
    const int op = host_order_[i];
    const unsigned* ready = &flags_host_[1 + 2 * i];
    const auto t0 = clock::now();
    for (uint64_t spins = 1; __atomic_load_n(ready, __ATOMIC_ACQUIRE) != seq_; ++spins) {
      __builtin_ia32_pause();
      if (spins % 16384 != 0) continue;
      // A failed GPU never sets the flag: check the streams, and give up after a minute.
      cudaError_t e = cudaStreamQuery(device_stream());
      if (e == cudaSuccess || e == cudaErrorNotReady) e = cudaStreamQuery(host_stream());
      const bool late = clock::now() - t0 > std::chrono::seconds(60);
      if ((e != cudaSuccess && e != cudaErrorNotReady) || late) {
        release_host_ops();
        const std::string& name = prog_->ops[static_cast<size_t>(op)].name;
        if (late) return Error("cuda backend: the GPU did not reach CPU op '{}' within 60 s", name);
        return cuda::cuda_error(e, __FILE__, __LINE__, "cudaStreamQuery (waiting for the GPU)")
            .with_context(name);
      }
    }
    run_host_op(op);
    __atomic_store_n(&flags_host_[2 + 2 * i], seq_, __ATOMIC_RELEASE);
  }
  return Status::ok();
}

Status GpuSession::ensure_timing(const std::vector<Step>& steps) {
  // Grown for every step plan a call runs (calls that stream experts have their own).
  if (mark_begin_.size() < steps.size()) {
    mark_begin_.resize(steps.size(), nullptr);
    mark_end_.resize(steps.size(), nullptr);
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    if (steps[i].kind != Step::Kind::device_op || mark_begin_[i]) continue;
    KTX_CUDA_RETURN_IF_ERROR(cudaEventCreate(&mark_begin_[i]));
    KTX_CUDA_RETURN_IF_ERROR(cudaEventCreate(&mark_end_[i]));
  }
  return Status::ok();
}

Status GpuSession::time_mark(int step, bool after, cudaStream_t st, bool capturing) {
  cudaEvent_t e = (after ? mark_end_ : mark_begin_)[static_cast<size_t>(step)];
  // While capturing, a plain record only orders streams; External makes it a node that
  // records the time at each replay.
  KTX_CUDA_RETURN_IF_ERROR(cudaEventRecordWithFlags(e, st, capturing ? cudaEventRecordExternal
                                                                     : cudaEventRecordDefault));
  return Status::ok();
}

Expected<double> GpuSession::collect_timing(const std::vector<Step>& steps,
                                            OpProfile* profile) const {
  double total = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    if (steps[i].kind != Step::Kind::device_op) continue;
    float ms = 0;
    KTX_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, mark_begin_[i], mark_end_[i]));
    total += ms * 1e-3;
    if (!profile) continue;
    const ProgramOp& op = prog_->ops[static_cast<size_t>(steps[i].op)];
    OpProfile::Entry& e = profile->by_kind[std::string(op_kind_name(op.kind)) + " (gpu)"];
    e.seconds += ms * 1e-3;
    ++e.calls;
  }
  return total;
}

Status GpuSession::copy(const Program& prog, int b, int64_t T, int64_t first, bool to_device,
                        bool logits, cudaStream_t st) {
  const PlanBuffer& pb = prog.buffers[static_cast<size_t>(b)];
  const cudaMemcpyKind kind = to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
  Arena& arena = call_->arena;
  auto move = [&](void* dev, void* host, size_t bytes) -> Status {
    if (to_device) KTX_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dev, host, bytes, kind, st));
    else KTX_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host, dev, bytes, kind, st));
    return Status::ok();
  };
  if (pb.kind == "route") {
    const size_t n = static_cast<size_t>(T * pb.width);
    KTX_RETURN_IF_ERROR(move(ids_[b].get(), arena.route_ids[b].data(), n * sizeof(int32_t)));
    return move(weights_[b].get(), arena.route_weights[b].data(), n * sizeof(float));
  }
  // Another value in the logits buffer (the embedding's output, say) is [T][n_embd].
  const int64_t rows = logits ? T - first : T;
  const int64_t width = b == prog.logits_buffer && !logits ? n_embd_ : pb.width;
  return move(act_[b].get(), arena.act[b].data(), static_cast<size_t>(rows * width) * sizeof(float));
}

Status GpuSession::download_act(int b, int64_t n_floats, float* dst) const {
  return act_[static_cast<size_t>(b)].download(dst, static_cast<size_t>(n_floats) * sizeof(float));
}

Status GpuSession::sync() const {
  for (int i = 0; i < 2; ++i) {
    KTX_CUDA_RETURN_IF_ERROR(cudaEventRecord(done_[i], streams_[i]));
    KTX_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(done_[i]));
  }
  return Status::ok();
}

Status GpuSession::replay(int64_t T, int64_t first, bool timed,
                          const std::function<Status()>& enqueue) {
  auto key = std::make_tuple(T, first, timed);
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    KTX_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(device_stream(), cudaStreamCaptureModeThreadLocal));
    Status st = enqueue();
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(device_stream(), &graph);
    KTX_RETURN_IF_ERROR(st.with_context("capturing the call's CUDA graph"));
    if (end != cudaSuccess) return cuda::cuda_error(end, __FILE__, __LINE__, "cudaStreamEndCapture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (inst != cudaSuccess) return cuda::cuda_error(inst, __FILE__, __LINE__, "cudaGraphInstantiate");
    it = graphs_.emplace(key, exec).first;
  }
  KTX_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(it->second, device_stream()));
  ++stats_.graph_launches;
  const Status driven = drive_host_ops();
  const Status synced = sync();
  KTX_RETURN_IF_ERROR(driven);
  return synced;
}

Status GpuSession::take_host_error() {
  Status st = host_error_;
  host_error_ = Status::ok();
  return st;
}

}  // namespace ktx

#endif  // KTX_HAVE_CUDA
