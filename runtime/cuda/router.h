// The MoE router, Qwen2-MoE's shared-expert gate and token sampling on the GPU (kernel
// families runtime/cuda/kernels/router and kernels/sample): entry points bound by name from a
// Library, launchers with the shapes checked, workspaces sized once at load, and the layer
// functions the backend calls. Everything a forward function does is a launch on `stream`:
// no allocation, no synchronization, no host read of device memory, so a decode step can be
// captured in one CUDA graph. Output pointers (expert ids and weights, the sampled token) may
// be mapped pinned host memory: every element has one writer and is written with a plain store.
//
// The router reproduces route_token (runtime/engine/router.cpp) decision for decision; the
// sampler reproduces Sampler::sample (runtime/engine/sampler.cpp) for the same uniform draw,
// up to the fixed-point probability sums described in kernels/sample/kernel.cuh.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "common/model/config.h"
#include "runtime/cuda/dev_tensor.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/library.h"
#include "runtime/engine/sampler.h"

namespace ktx::cuda {

inline constexpr int64_t kRouterMaxExperts = 512;  // KTX_ROUTER_MAX_EXPERTS
inline constexpr int64_t kRouterMaxTopK = 16;      // KTX_ROUTER_MAX_TOP_K
inline constexpr int64_t kRouterMaxGroups = 16;    // KTX_ROUTER_MAX_GROUPS
inline constexpr int64_t kSampleMaxVocab = 262144;  // KTX_SAMPLE_MAX_VOCAB

// How experts are scored (KTX_ROUTE_* in kernels/router/kernel.cuh).
enum class RouterScore : int {
  Softmax = 0,  // p = softmax(logits), weights = p[chosen]
  Sigmoid = 1,  // p = sigmoid(logits) (DeepSeek-V3)
  Logits = 2,   // choose on the logits, weights = softmax over the chosen (Mixtral)
};

// One layer's routing problem, as ModelConfig states it.
struct RouterDesc {
  int64_t n_expert = 0;
  int64_t top_k = 0;
  RouterScore score = RouterScore::Softmax;
  int64_t n_groups = 1;       // expert groups (1 = none)
  int64_t n_groups_used = 1;  // groups kept
  bool group_top2 = false;    // group score = sum of its two best (sigmoid routing), else max
  bool norm = false;          // renormalize the chosen weights to sum 1
  float scale = 1.0f;         // then multiply by this

  static RouterDesc from(const ModelConfig& c);
  // Errors name the field and the limit.
  Status validate() const;
};

class RouterKernels {
 public:
  // Errors: the image lacks an entry point (names it).
  static Expected<RouterKernels> bind(const Library& lib);

  // ids / weights [n_tok][top_k] from logits [n_tok] rows ld_logits floats apart; bias
  // [n_expert] (exp_probs_b, selection only) or null. One thread block per token.
  Status route(const RouterDesc& d, const float* logits, int64_t ld_logits, const float* bias,
               int64_t n_tok, int32_t* ids, float* weights, cudaStream_t stream = nullptr) const;
  // out[t * ld_out + i] *= sigmoid(gate[t]) for i < n, t < n_tok.
  Status shexp_gate(const float* gate, float* out, int64_t ld_out, int64_t n, int64_t n_tok,
                    cudaStream_t stream = nullptr) const;
  // *token from logits[n_vocab] with Sampler's chain (p checked by Sampler::validate's
  // rules). recent[n_recent]: ids the penalty applies to, once each; entries < 0 ignored.
  // The draw: *u, or (u null) the device xoshiro256** state rng_state[4], advanced only when
  // sampling. work: n_vocab floats, wbuf: n_vocab uint64 (scratch). One thread block.
  Status sample(const SamplerParams& p, const float* logits, int64_t n_vocab,
                const int32_t* recent, int64_t n_recent, const double* u, uint64_t* rng_state,
                float* work, uint64_t* wbuf, int32_t* token, cudaStream_t stream = nullptr) const;
  // ring[*pos % cap] = *token, ++*pos (one thread).
  Status sample_accept(int32_t* ring, int64_t cap, int64_t* pos, const int32_t* token,
                       cudaStream_t stream = nullptr) const;

 private:
  cudaKernel_t route_ = nullptr, shexp_gate_ = nullptr, sample_ = nullptr, accept_ = nullptr;
};

// Device scratch of the router and the shared-expert gate, made once at load for calls of up
// to max_tokens tokens: router logits [max_tokens][n_expert] floats, gate dots [max_tokens].
struct RouterWorkspace {
  static Expected<RouterWorkspace> create(const ModelConfig& c, int64_t max_tokens);
  // Bytes create() allocates (for the VRAM plan).
  static size_t bytes(const ModelConfig& c, int64_t max_tokens);

  int64_t max_tokens = 0, n_expert = 0;
  DeviceBuffer logits;  // [max_tokens, n_expert]
  DeviceBuffer gate;    // [max_tokens]
};

// The sampler's device state for one sequence, made once: scratch for a vocabulary of n_vocab,
// the penalty's window (a ring of repeat_last_n ids, -1 = empty) and the generator.
struct SampleWorkspace {
  static Expected<SampleWorkspace> create(int64_t n_vocab, int64_t repeat_last_n);
  static size_t bytes(int64_t n_vocab, int64_t repeat_last_n);
  // Restarts the sequence like Sampler::reset + accept(history...): the ring holds the last
  // repeat_last_n of `history`, the generator is seeded as Xoshiro256(seed). Synchronous
  // uploads: call between steps, never inside a captured graph.
  Status reset(uint64_t seed, const std::vector<int32_t>& history);

  int64_t n_vocab = 0, repeat_last_n = 0;
  DeviceBuffer work;     // [n_vocab] float: penalized logits
  DeviceBuffer wbuf;     // [n_vocab] uint64: fixed-point weights of a selection
  DeviceBuffer ring;     // [max(1, repeat_last_n)] int32
  DeviceBuffer ring_pos; // int64: tokens appended so far
  DeviceBuffer rng;      // 4 x uint64: xoshiro256** state
};

// Layer functions (tensors by GGUF name through `lookup`).

// blk.<layer>.ffn_gate_inp.weight · h -> logits (GEMVs of kGemvMaxTokens tokens), plus
// blk.<layer>.exp_probs_b.bias when c.exp_probs_bias -> ids / weights [n_tok][top_k].
// h: [n_tok][n_embd]; n_tok <= ws.max_tokens.
Status router_layer(const Kernels& k, const RouterKernels& rk, const ModelConfig& c,
                    int64_t layer, const TensorLookup& lookup, const float* h, int64_t n_tok,
                    int32_t* ids, float* weights, RouterWorkspace& ws, cudaStream_t stream);

// Qwen2-MoE: out[t][:] *= sigmoid(blk.<layer>.ffn_gate_inp_shexp.weight · h[t]) when
// c.shexp_gate (else nothing). h, out: [n_tok][n_embd].
Status shexp_gate(const Kernels& k, const RouterKernels& rk, const ModelConfig& c, int64_t layer,
                  const TensorLookup& lookup, const float* h, int64_t n_tok, float* out,
                  RouterWorkspace& ws, cudaStream_t stream);

// The next token from logits[ws.n_vocab] into *token, the penalty over ws's ring. u: the
// uniform the host drew (only read when p.temperature > 0), or null to draw from ws.rng on
// the device. Then, if the token is kept, sample_accept(ws, token) appends it to the ring.
Status sample(const RouterKernels& rk, const SamplerParams& p, const float* logits,
              SampleWorkspace& ws, const double* u, int32_t* token, cudaStream_t stream);
Status sample_accept(const RouterKernels& rk, SampleWorkspace& ws, const int32_t* token,
                     cudaStream_t stream);

}  // namespace ktx::cuda
