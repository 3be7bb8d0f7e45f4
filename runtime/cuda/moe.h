// Routed experts on the GPU for long prefill calls (issue 12: the plan streams a MoE layer's
// expert weights to the GPU when a call has enough tokens, kt-stream in ktc): the launchers of
// the moe kernel family (kernels/moe/kernel.cuh) and the double-buffered copy of a layer's
// expert weights from the mapped GGUF into device slots.
//
// MoeKernels::run: out[t] = sum_j w[t][j] * down_e(silu(gate_e · x_t) * (up_e · x_t)), e = ids[t][j],
// with the weights read in place as GGUF blocks and float sums in k order (the GEMM family);
// the same function as cpu::moe_reference without activation rounding.
#pragma once

#include <cuda_runtime_api.h>

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/quant/quant.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/library.h"

namespace ktx::cuda {

// One of a layer's three expert tensors on the device: n_expert matrices of `rows` rows of k
// elements, row_bytes apart, expert_bytes apart.
struct ExpertMatrix {
  GGMLType type = GGMLType::F32;
  const void* data = nullptr;
  int64_t rows = 0, k = 0, row_bytes = 0, expert_bytes = 0;
};

struct ExpertWeights {
  ExpertMatrix gate, up, down;  // gate, up: [E][n_ff][n_embd]; down: [E][n_embd][n_ff]
  int64_t n_expert = 0;
};

// Device scratch of MoeKernels::run for up to max_pairs (token, choice) pairs.
struct MoeWorkspace {
  static Expected<MoeWorkspace> create(int64_t max_pairs, int64_t n_embd, int64_t n_ff,
                                       int64_t n_expert);
  static uint64_t bytes_for(int64_t max_pairs, int64_t n_embd, int64_t n_ff, int64_t n_expert);
  int64_t max_pairs = 0, n_embd = 0, n_ff = 0, n_expert = 0;
  DeviceBuffer buf;
  int* offsets = nullptr;  // [n_expert + 1]
  int* perm = nullptr;     // [max_pairs]
  int* inv = nullptr;      // [max_pairs]
  float* xg = nullptr;     // [max_pairs][n_embd]: gathered inputs, then the down outputs
  float* g = nullptr;      // [max_pairs][n_ff]
  float* u = nullptr;      // [max_pairs][n_ff]
};

class MoeKernels {
 public:
  // Optional family (plans made before it lack it): has() is then false.
  static MoeKernels bind(const Library& lib);
  bool has(GGMLType type) const { return sort_ && gather_ && combine_ && gemm_.count(type) != 0; }
  bool has(const ExpertWeights& w) const { return has(w.gate.type) && has(w.up.type) && has(w.down.type); }
  // The expert GEMMs on tensor cores (bf16-rounded operands, gemm_mma_tile) where the code has
  // them, unless set_mma(false) or KTX_CUDA_MMA=0: the float GEMM otherwise.
  void set_mma(bool on) { mma_on_ = on; }
  bool uses_mma(GGMLType type) const { return mma_on_ && gemm_mma_.count(type) != 0; }

  // The routed experts of n_tok tokens (x rows ld_x apart; ids, weights [n_tok][top_k] in
  // device memory) into out (rows ld_out apart); k runs the SiLU. Errors: a weight type
  // without a kernel, shapes that do not match the workspace or each other, more pairs than
  // the workspace holds.
  Status run(const Kernels& k, const ExpertWeights& w, const float* x, int64_t ld_x,
             const int32_t* ids, const float* weights, int64_t n_tok, int64_t top_k, float* out,
             int64_t ld_out, MoeWorkspace& ws, cudaStream_t stream) const;

 private:
  cudaKernel_t sort_ = nullptr, gather_ = nullptr, combine_ = nullptr;
  std::map<GGMLType, cudaKernel_t> gemm_, gemm_mma_;
  bool mma_on_ = true;
  cudaKernel_t gemm_for(GGMLType type) const {
    return uses_mma(type) ? gemm_mma_.at(type) : gemm_.at(type);
  }
};

// Host memory copied into device slots on a stream of its own: `slots` device buffers of
// slot_bytes, each loaded with a list of host ranges and then used by a compute stream, with
// events so a load's copies wait until the slot's last user is done and a user waits for its
// load. The sources (the mapped GGUF) stay pageable: registering a file mapping with the driver
// is slow or unstable on some hosts (llama.cpp turned it off by default for that), so a load
// copies each range through a ring of pinned staging buffers, a team of threads filling one
// (memcpy) while the copy engine drains the one before (DMA at the link's speed).
class ExpertStream {
 public:
  struct Range {
    const void* src = nullptr;
    size_t bytes = 0;
    size_t offset = 0;  // in the slot
  };
  // copy_threads: the team that fills the staging buffers (0: a default of min(8, cores / 2)).
  static Expected<std::unique_ptr<ExpertStream>> create(size_t slot_bytes, int slots,
                                                        int copy_threads = 0);
  ~ExpertStream();
  ExpertStream(const ExpertStream&) = delete;
  ExpertStream& operator=(const ExpertStream&) = delete;

  int slots() const { return static_cast<int>(slot_.size()); }
  size_t slot_bytes() const { return slot_bytes_; }
  void* slot(int i) const { return slot_[static_cast<size_t>(i)].get(); }
  int copy_threads() const { return parts_; }
  size_t staging_bytes() const { return staging_.size() * kStagingBytes; }
  // Copies `ranges` into slot i: returns once every byte is in a staging buffer and its copy
  // is enqueued (the caller's thread and the team do the memcpy; the copies wait for the
  // slot's last release()). Errors: a range past the slot, a CUDA error.
  Status load(int i, const std::vector<Range>& ranges);
  // `compute` waits for slot i's last load.
  Status acquire(int i, cudaStream_t compute);
  // Slot i is free once `compute` reaches this point.
  Status release(int i, cudaStream_t compute);
  uint64_t loaded_bytes() const { return loaded_; }

  static constexpr size_t kStagingBytes = size_t{32} << 20;
  static constexpr int kStagingBuffers = 4;

 private:
  ExpertStream() = default;
  // memcpy of n bytes split over the caller and the team.
  void parallel_copy(void* dst, const void* src, size_t n);
  void team_main(int index);

  size_t slot_bytes_ = 0;
  std::vector<DeviceBuffer> slot_;
  std::vector<cudaEvent_t> loaded_ev_, freed_ev_;
  std::vector<void*> staging_;           // pinned, kStagingBytes each
  std::vector<cudaEvent_t> staged_ev_;   // a staging buffer's last copy out
  size_t next_staging_ = 0;
  cudaStream_t copy_ = nullptr;
  uint64_t loaded_ = 0;
  // The copy team: a job is (dst, src, n) split in copy_threads() parts.
  std::vector<std::thread> team_;
  int parts_ = 1;  // the caller and the team
  std::mutex mu_;
  std::condition_variable wake_, done_;
  uint64_t job_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  char* job_dst_ = nullptr;
  const char* job_src_ = nullptr;
  size_t job_n_ = 0;
};

}  // namespace ktx::cuda
