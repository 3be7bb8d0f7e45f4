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
#include "runtime/engine/moe_fast.h"
#include "runtime/engine/thread_pool.h"
#include "runtime/engine/weights.h"

namespace ktx {

struct ModelImpl {
  ModelConfig cfg;
  std::shared_ptr<const GGUFFile> gguf;
  int64_t n_ctx = 0;
  std::unordered_map<std::string, Weight> weights;
  std::vector<double> rope_inv_freq;  // n_rot / 2 frequencies (YaRN-corrected when enabled)
  std::unique_ptr<ThreadPool> pool;
  // Fast routed experts (moe_fast.h): [n_layer], null where the float32 path runs; their pool.
  std::vector<std::unique_ptr<MoeFastLayer>> moe_fast;
  std::unique_ptr<cpu::ThreadPool> cpu_pool;
  bool moe_oracle = false;  // EngineOptions::moe_oracle
  ModelImpl();
  ~ModelImpl();

  // check_tensors ran at load, so every name a layer asks for exists.
  const Weight& w(const std::string& name) const { return weights.at(name); }
  const Weight* find(const std::string& name) const {
    auto it = weights.find(name);
    return it == weights.end() ? nullptr : &it->second;
  }
};

// Per-layer cache rows, [n_ctx][width]. GQA: k and v after RoPE. MLA: the normalized latent
// (k = [kv_lora]) and the roped shared key part (v = [rope dim]); heads are expanded from
// them at attention time (the "absorbed" form), which keeps the cache small.
struct LayerCache {
  std::vector<float> k, v;
};
struct SessionCache {
  std::vector<LayerCache> layers;
};

// What a layer function needs about the current call.
struct StepCtx {
  const ModelImpl& m;
  ThreadPool& pool;
  int64_t n_past = 0;   // position of the first token of this call
  int64_t n_tok = 0;    // tokens in this call
  const TraceHook* trace = nullptr;
  OpProfile* profile = nullptr;
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

// ops.cpp
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);
// Rotate the first n_rot dims of one head vector at position pos (style from the config).
void apply_rope(const ModelImpl& m, float* x, int64_t pos);
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
// Routed (fast kernels where the layer has them) + shared experts. Errors come only from the
// fast kernels (routing they reject).
Status ffn_moe(const StepCtx& s, int64_t il, const float* h, float* dst);

// router.cpp: pick n_expert_used experts for one token from its router logits; writes the
// chosen expert ids and their weights (scale applied). bias may be null.
void route_token(const ModelConfig& c, const float* logits, const float* bias, int32_t* experts,
                 float* weights);

}  // namespace ktx
