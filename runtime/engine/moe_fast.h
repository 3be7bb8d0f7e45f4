// The fast routed-expert path of the engine: per MoE layer, the kernels a plan chose
// (--kt-select-kernels: kernel_decode/config_decode, kernel_prefill/config_prefill) created at
// load, with the prefill weights repacked once. A call of at most the decode descriptor's
// max_tokens tokens runs MoeDecode (GEMVs on GGUF blocks in place); a larger one runs
// MoePrefill (int8 GEMMs on the repacked weights) when the layer has one, else MoeDecode too
// (its kernels take any token count). Layers without a choice keep the exact float32 path.
// EngineOptions::moe_oracle swaps the kernels for cpu::moe_reference with their rounding.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "runtime/engine/engine.h"

namespace ktx {

namespace cpu {
class MoeDecode;
class MoePrefill;
class ThreadPool;
struct RepackedMoe;
}  // namespace cpu

struct ModelImpl;
struct StepCtx;

struct MoeFastLayer {
  MoeFastLayer();
  ~MoeFastLayer();
  std::unique_ptr<cpu::MoeDecode> decode;
  std::unique_ptr<cpu::MoePrefill> prefill;      // null: large calls run `decode`
  std::unique_ptr<cpu::RepackedMoe> repacked;    // prefill weights
  const void* gate = nullptr;                    // GGUF data of the three expert tensors
  const void* up = nullptr;
  const void* down = nullptr;
  int64_t decode_max_tokens = 0;
  int64_t prefill_min_tokens = 0;  // calls of this many tokens or more run `prefill`
  std::mutex mu;  // the drivers keep per-call scratch: one call at a time per layer
};

// Creates the fast layers of `m` from opt.moe_kernels (index = layer, null = reference) and
// the kernels' thread pool. Errors name the layer: a descriptor or config that does not parse,
// a tier this CPU lacks, a descriptor that does not match the GGUF tensors, a failed repack.
Status load_fast_moe(ModelImpl& m, const EngineOptions& opt);

// Bytes of the prefill repacks of every fast layer.
uint64_t repacked_expert_bytes(const ModelImpl& m);

// dst [n_tok][n_embd] = the routed experts' weighted sum for the tokens of `s`, through the
// layer's fast kernels. chosen/weights: [n_tok][top_k] from the router.
Status run_fast_moe(const StepCtx& s, MoeFastLayer& layer, const float* h, const int32_t* chosen,
                    const float* weights, float* dst);

}  // namespace ktx
