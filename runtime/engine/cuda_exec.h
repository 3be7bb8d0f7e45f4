// A session's state in the CUDA backend (cuda_backend.cpp): the device arena (one buffer per
// plan buffer, for kMaxCallTokens tokens), the device and host streams with the events of the
// call's step plan (step_plan.h), the host arena registered (pinned) so copies are
// asynchronous and capturable, the position of the call in device memory, the CPU ops' host
// functions, and the CUDA graphs captured per call size. Nothing here allocates while a call
// is enqueued, so a call can be captured.
#pragma once

#include "runtime/engine/engine_internal.h"
#include "runtime/engine/step_plan.h"

#if KTX_HAVE_CUDA

#include <cuda_runtime_api.h>

#include <map>
#include <tuple>

#include "runtime/cuda/attention.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/dev_tensor.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/library.h"
#include "runtime/cuda/router.h"

namespace ktx {

// One call's tokens (longer calls are split); plans that stream experts to the GPU allow their
// stream_chunk for calls that want the last token's logits only.
inline constexpr int64_t kMaxCallTokens = 512;
inline constexpr int64_t kGraphTokens = 8;      // calls up to this size replay a graph

// KTX_CUDA_GRAPH=0 or KTX_CUDA_DEBUG=1 turn graphs off (read once).
bool graphs_enabled();

class GpuSession final : public BackendState {
 public:
  // Device buffers for every buffer a device step touches (for calls of max_tok tokens, logits
  // for max_logits of them), `scratch_floats` per scratch slot.
  static Expected<std::unique_ptr<GpuSession>> create(const Program& prog,
                                                      const std::vector<Step>& steps,
                                                      int64_t max_tok, int64_t max_logits,
                                                      int64_t n_embd, int64_t scratch_floats);
  // Events and device buffers for another step plan of the same program (calls that stream
  // experts run their routed experts on the device): made between calls, never while one is
  // captured (such calls run eagerly). A buffer made here holds no data until a step writes it.
  Status ensure_steps(const std::vector<Step>& steps);
  int64_t max_logits() const { return max_logits_; }
  ~GpuSession() override;

  cudaStream_t device_stream() const { return streams_[kDeviceStream]; }
  cudaStream_t host_stream() const { return streams_[kHostStream]; }
  cudaEvent_t event(int step) const { return events_[static_cast<size_t>(step)]; }
  float* act(int b) const { return act_[static_cast<size_t>(b)].as<float>(); }
  int32_t* route_ids(int b) const { return ids_[static_cast<size_t>(b)].as<int32_t>(); }
  float* route_weights(int b) const { return weights_[static_cast<size_t>(b)].as<float>(); }
  const int32_t* position() const { return pos_dev_.as<int32_t>(); }
  // Scratch slot of at least n floats (sized at create: an error, never an allocation).
  Expected<float*> scratch(int slot, int64_t n) const;

  // Registers the host arena's buffers (grown to max_tok first) so copies can be async; drops
  // the graphs when a buffer moved since they were captured.
  Status bind_host(const Program& prog, Arena& arena);
  // The call host steps run for (null between calls); sets the position the call starts at.
  void set_call(OpCall* call);
  // The current call is timed (its host ops add to the call's profile as "KIND (cpu)").
  void set_timing(bool on) { timing_ = on; }

  // Enqueue pieces: the call's start (position upload, host stream forked) and end (joined).
  Status begin();
  Status end();
  Status host_op(int op, cudaStream_t st);
  // The CPU-op hand-off (KTX_CUDA_HANDOFF): host functions (cudaLaunchHostFunc: CUDA's
  // callback thread runs the op), or flags: mapped pinned words the GPU sets when an op's
  // inputs are on the host and waits on for its result, while the thread that launched the
  // call runs the CPU ops in step order (drive_host_ops, between the launch and the sync).
  // Flags need the plan's handoff kernels and are used for graph replays only (one launch);
  // eagerly enqueued calls (prefill, per-op synchronization) use host functions.
  void use_flags(const cuda::Kernels* k) { flag_kernels_ = k; }
  bool flags_on() const { return flag_kernels_ != nullptr && call_flags_; }
  // This call hands off through flags (when the session has them); bumps the sequence number.
  void begin_call(bool flags);
  // Runs the call's CPU ops as their ready flags arrive. Errors: the GPU failed or did not
  // reach an op in time (every waiting GPU node is released first, so a sync cannot hang).
  Status drive_host_ops();
  // Timing of device ops (profiled calls): events before and after device step `step`,
  // recorded as graph nodes while capturing. ensure_timing creates them (before a capture);
  // collect_timing (after the call's sync) adds each device op's time to the profile under
  // "KIND (gpu)" and returns the call's device-op seconds.
  Status ensure_timing(const std::vector<Step>& steps);
  Status time_mark(int step, bool after, cudaStream_t st, bool capturing);
  Expected<double> collect_timing(const std::vector<Step>& steps, OpProfile* profile) const;
  // Buffer b between the arenas: T rows of its width; `logits`: the lm_head's output, rows
  // first..T of n_vocab. The logits buffer holds [T][n_embd] activations before the lm_head
  // writes it (ktc's buffer reuse), and those copies take all T rows.
  Status copy(const Program& prog, int b, int64_t T, int64_t first, bool to_device, bool logits,
              cudaStream_t st);
  Status download_act(int b, int64_t n_floats, float* dst) const;
  Status sync() const;
  // Runs the call as a graph: captured from `enqueue` the first time a (T, first, timed) is
  // seen (timed graphs carry the timing events).
  Status replay(int64_t T, int64_t first, bool timed, const std::function<Status()>& enqueue);
  // The first error of a host step since the last take.
  Status take_host_error();
  // The session's KV caches of GPU attention layers (f16 rows, [n_ctx][width]) and the
  // workspaces of the attention and router layer functions, made by the backend at create.
  struct LayerKv {
    cuda::DeviceBuffer k, v;
  };
  std::map<int64_t, LayerKv> kv;
  std::unique_ptr<cuda::AttnWorkspace> attn_ws;
  std::unique_ptr<cuda::RouterWorkspace> router_ws;
  std::unique_ptr<cuda::XQuant> xq;  // rounded inputs of the dense / shared FFNs and lm_head
  int64_t n_ctx = 0;

  DeviceStats stats() const override { return stats_; }
  void add_streamed(int64_t layers, uint64_t bytes) {
    ++stats_.streamed_calls;
    stats_.streamed_layers += layers;
    stats_.streamed_bytes += bytes;
  }
  void add_call(double seconds) {
    ++stats_.calls;
    stats_.call_seconds += seconds;
  }
  void add_timed_call(double seconds, double device_seconds) {
    ++stats_.timed_calls;
    stats_.timed_call_seconds += seconds;
    stats_.device_seconds += device_seconds;
  }

 private:
  GpuSession() = default;
  static void run_host(void* arg);
  void run_host_op(int op);
  // Sets every done flag of the current call (after a failed wait: nothing waits forever).
  void release_host_ops();

  struct HostArg {
    GpuSession* gs;
    int op;
  };
  const Program* prog_ = nullptr;
  int64_t max_tok_ = 0, max_logits_ = 0, n_embd_ = 0;
  cudaStream_t streams_[2] = {nullptr, nullptr};
  std::vector<cudaEvent_t> events_;
  cudaEvent_t fork_ = nullptr, join_ = nullptr;
  cudaEvent_t done_[2] = {nullptr, nullptr};  // blocking-sync events of sync()
  std::vector<cuda::DeviceBuffer> act_, ids_, weights_, scratch_;
  cuda::DeviceBuffer pos_dev_;
  int32_t* pos_host_ = nullptr;          // pinned
  std::vector<void*> registered_;        // host arena pointers registered, in bind order
  std::vector<HostArg> host_args_;       // per op index
  std::vector<int> host_order_;          // the host ops' op indices in step order
  std::vector<int> flag_index_;          // per op index: its ready word (done = ready + 1)
  unsigned* flags_host_ = nullptr;       // mapped pinned: [0] sequence, then ready/done pairs
  unsigned* flags_dev_ = nullptr;        // the same words as the device sees them
  unsigned seq_ = 0;
  const cuda::Kernels* flag_kernels_ = nullptr;  // set: the session may hand off through flags
  bool call_flags_ = false;
  OpCall* call_ = nullptr;
  bool timing_ = false;
  Status host_error_ = Status::ok();
  std::map<std::tuple<int64_t, int64_t, bool>, cudaGraphExec_t> graphs_;
  std::vector<cudaEvent_t> mark_begin_, mark_end_;  // per step (device ops only), timing
  DeviceStats stats_;
};

}  // namespace ktx

#endif  // KTX_HAVE_CUDA
