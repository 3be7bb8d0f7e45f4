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

#include <cstdint>
#include <map>
#include <string>
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
// events so a load waits until the slot's last user is done and a user waits for its load.
// Host ranges are registered (pinned, read-only: the GGUF mapping) with pin(); copies from
// unregistered memory still work but go through the driver's staging buffers.
class ExpertStream {
 public:
  struct Range {
    const void* src = nullptr;
    size_t bytes = 0;
    size_t offset = 0;  // in the slot
  };
  static Expected<ExpertStream> create(size_t slot_bytes, int slots);
  ExpertStream() = default;
  ExpertStream(ExpertStream&&) noexcept;
  ExpertStream& operator=(ExpertStream&&) noexcept;
  ~ExpertStream();

  // Registers [p, p + n) page by page where not yet registered. An error only for bad
  // arguments; when the driver refuses (no read-only registration on this system), the range
  // stays pageable and pinned_bytes() does not count it (refusal() says why).
  Status pin(const void* p, size_t n);
  uint64_t pinned_bytes() const { return pinned_; }
  const std::string& refusal() const { return refusal_; }

  int slots() const { return static_cast<int>(slot_.size()); }
  size_t slot_bytes() const { return slot_bytes_; }
  void* slot(int i) const { return slot_[static_cast<size_t>(i)].get(); }
  // Enqueue the copies of `ranges` into slot i, after the slot's last release().
  Status load(int i, const std::vector<Range>& ranges);
  // `compute` waits for slot i's last load.
  Status acquire(int i, cudaStream_t compute);
  // Slot i is free once `compute` reaches this point.
  Status release(int i, cudaStream_t compute);
  uint64_t loaded_bytes() const { return loaded_; }

 private:
  void destroy();
  size_t slot_bytes_ = 0;
  std::vector<DeviceBuffer> slot_;
  std::vector<cudaEvent_t> loaded_ev_, freed_ev_;
  cudaStream_t copy_ = nullptr;
  std::map<uintptr_t, uintptr_t> registered_;  // page ranges [begin, end) we registered
  uint64_t pinned_ = 0, loaded_ = 0;
  std::string refusal_;
};

}  // namespace ktx::cuda
