// runtime/cuda/router.h.
#include "runtime/cuda/router.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/util/rng.h"

namespace ktx::cuda {
namespace {

constexpr int kRouterThreads = 256;   // KTX_ROUTER_THREADS
constexpr int kSampleThreads = 1024;  // KTX_SAMPLE_THREADS
constexpr int kGateThreads = 256;

Status check_tensor(const DevTensor& t, const std::string& name, int64_t row_len, int64_t n_rows) {
  if (t.row_len != row_len || t.n_rows != n_rows)
    return Error("cuda router: tensor '{}' is [{}, {}], expected [{}, {}]", name, t.row_len,
                 t.n_rows, row_len, n_rows);
  return Status::ok();
}

// Sampler::validate's ranges (sampler.cpp lives in the engine, which this library does not link).
Status check_sampler(const SamplerParams& p) {
  if (!std::isfinite(p.temperature)) return Error("cuda sampler: temperature {}", p.temperature);
  if (p.top_k < 0) return Error("cuda sampler: top_k {}", p.top_k);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) return Error("cuda sampler: top_p {} (0, 1]", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) return Error("cuda sampler: min_p {} [0, 1]", p.min_p);
  if (!(p.repeat_penalty > 0.0f) || !std::isfinite(p.repeat_penalty))
    return Error("cuda sampler: repeat_penalty {}", p.repeat_penalty);
  if (p.repeat_last_n < 0) return Error("cuda sampler: repeat_last_n {}", p.repeat_last_n);
  return Status::ok();
}

}  // namespace

RouterDesc RouterDesc::from(const ModelConfig& c) {
  RouterDesc d;
  d.n_expert = c.n_expert;
  d.top_k = c.n_expert_used;
  d.score = c.softmax_after_topk         ? RouterScore::Logits
            : c.gating == GatingFunc::Sigmoid ? RouterScore::Sigmoid
                                              : RouterScore::Softmax;
  d.n_groups = c.n_expert_groups;
  d.n_groups_used = c.n_group_used;
  d.group_top2 = c.gating == GatingFunc::Sigmoid;
  d.norm = c.expert_weights_norm;
  d.scale = c.expert_weights_scale;
  return d;
}

Status RouterDesc::validate() const {
  if (n_expert < 1 || n_expert > kRouterMaxExperts)
    return Error("cuda router: {} experts (1..{})", n_expert, kRouterMaxExperts);
  if (top_k < 1 || top_k > std::min(kRouterMaxTopK, n_expert))
    return Error("cuda router: top_k {} (1..{} for {} experts)", top_k,
                 std::min(kRouterMaxTopK, n_expert), n_expert);
  if (n_groups < 1 || n_groups > kRouterMaxGroups || n_expert % n_groups != 0)
    return Error("cuda router: {} expert groups (1..{}, dividing {} experts)", n_groups,
                 kRouterMaxGroups, n_expert);
  if (n_groups_used < 1 || n_groups_used > n_groups)
    return Error("cuda router: {} groups used of {}", n_groups_used, n_groups);
  return Status::ok();
}

Expected<RouterKernels> RouterKernels::bind(const Library& lib) {
  RouterKernels k;
  KTX_ASSIGN_OR_RETURN(k.route_, lib.kernel("ktx_route"));
  KTX_ASSIGN_OR_RETURN(k.shexp_gate_, lib.kernel("ktx_shexp_gate"));
  KTX_ASSIGN_OR_RETURN(k.sample_, lib.kernel("ktx_sample"));
  KTX_ASSIGN_OR_RETURN(k.accept_, lib.kernel("ktx_sample_accept"));
  return k;
}

Status RouterKernels::route(const RouterDesc& d, const float* logits, int64_t ld_logits,
                            const float* bias, int64_t n_tok, int32_t* ids, float* weights,
                            cudaStream_t stream) const {
  KTX_RETURN_IF_ERROR(d.validate());
  if (ld_logits < d.n_expert)
    return Error("cuda router: logits rows {} apart for {} experts", ld_logits, d.n_expert);
  if (n_tok < 0 || n_tok > 0x7fffffff) return Error("cuda router: {} tokens", n_tok);
  if (n_tok == 0) return Status::ok();
  long long ld = ld_logits;
  int n = static_cast<int>(d.n_expert), k = static_cast<int>(d.top_k);
  int score = static_cast<int>(d.score), groups = static_cast<int>(d.n_groups);
  int used = static_cast<int>(d.n_groups_used), top2 = d.group_top2 ? 1 : 0, norm = d.norm ? 1 : 0;
  float scale = d.scale;
  int* idp = ids;
  void* args[] = {&logits, &ld, &bias, &n, &k, &score, &groups, &used, &top2, &norm, &scale, &idp, &weights};
  return launch(route_, dim3(static_cast<unsigned>(n_tok)), dim3(kRouterThreads), args, 0, stream);
}

Status RouterKernels::shexp_gate(const float* gate, float* out, int64_t ld_out, int64_t n,
                                 int64_t n_tok, cudaStream_t stream) const {
  if (n < 0 || ld_out < n || n_tok < 0 || n_tok > 65535 || n > 0x7fffffff)
    return Error("cuda shexp gate: {} tokens of {} (rows {} apart)", n_tok, n, ld_out);
  if (n == 0 || n_tok == 0) return Status::ok();
  long long ld = ld_out;
  int nn = static_cast<int>(n);
  void* args[] = {&gate, &out, &ld, &nn};
  const dim3 grid(static_cast<unsigned>((n + kGateThreads - 1) / kGateThreads), static_cast<unsigned>(n_tok));
  return launch(shexp_gate_, grid, dim3(kGateThreads), args, 0, stream);
}

Status RouterKernels::sample(const SamplerParams& p, const float* logits, int64_t n_vocab,
                             const int32_t* recent, int64_t n_recent, const double* u,
                             uint64_t* rng_state, float* work, uint64_t* wbuf, int32_t* token,
                             cudaStream_t stream) const {
  KTX_RETURN_IF_ERROR(check_sampler(p));
  if (n_vocab < 1 || n_vocab > kSampleMaxVocab)
    return Error("cuda sampler: vocabulary of {} (1..{})", n_vocab, kSampleMaxVocab);
  if (n_recent < 0 || n_recent > 0x7fffffff || (n_recent > 0 && recent == nullptr))
    return Error("cuda sampler: {} recent tokens", n_recent);
  if (p.temperature > 0.0f && u == nullptr && rng_state == nullptr)
    return Error("cuda sampler: sampling needs a draw u or a device generator state");
  int nv = static_cast<int>(n_vocab), nr = static_cast<int>(n_recent);
  float temp = p.temperature, top_p = p.top_p, min_p = p.min_p, pen = p.repeat_penalty;
  int top_k = p.top_k;
  void* args[] = {&logits, &nv, &recent, &nr, &temp, &top_k, &top_p, &min_p, &pen,
                  &u, &rng_state, &work, &wbuf, &token};
  return launch(sample_, dim3(1), dim3(kSampleThreads), args, 0, stream);
}

Status RouterKernels::sample_accept(int32_t* ring, int64_t cap, int64_t* pos, const int32_t* token,
                                    cudaStream_t stream) const {
  if (cap < 0 || cap > 0x7fffffff) return Error("cuda sampler: a window of {} tokens", cap);
  if (cap == 0) return Status::ok();
  int c = static_cast<int>(cap);
  long long* pp = reinterpret_cast<long long*>(pos);
  void* args[] = {&ring, &c, &pp, &token};
  return launch(accept_, dim3(1), dim3(32), args, 0, stream);
}

size_t RouterWorkspace::bytes(const ModelConfig& c, int64_t max_tokens) {
  return static_cast<size_t>(max_tokens * c.n_expert + max_tokens) * sizeof(float);
}

Expected<RouterWorkspace> RouterWorkspace::create(const ModelConfig& c, int64_t max_tokens) {
  if (max_tokens < 1) return Error("cuda router: workspace for {} tokens", max_tokens);
  RouterWorkspace ws;
  ws.max_tokens = max_tokens;
  ws.n_expert = c.n_expert;
  const int64_t n_expert = std::max<int64_t>(1, c.n_expert);
  KTX_ASSIGN_OR_RETURN(ws.logits, DeviceBuffer::alloc(static_cast<size_t>(max_tokens * n_expert) * sizeof(float)));
  KTX_ASSIGN_OR_RETURN(ws.gate, DeviceBuffer::alloc(static_cast<size_t>(max_tokens) * sizeof(float)));
  return ws;
}

size_t SampleWorkspace::bytes(int64_t n_vocab, int64_t repeat_last_n) {
  return static_cast<size_t>(n_vocab) * (sizeof(float) + sizeof(uint64_t)) +
         static_cast<size_t>(std::max<int64_t>(1, repeat_last_n)) * sizeof(int32_t) +
         sizeof(int64_t) + 4 * sizeof(uint64_t);
}

Expected<SampleWorkspace> SampleWorkspace::create(int64_t n_vocab, int64_t repeat_last_n) {
  if (n_vocab < 1 || n_vocab > kSampleMaxVocab)
    return Error("cuda sampler: vocabulary of {} (1..{})", n_vocab, kSampleMaxVocab);
  if (repeat_last_n < 0 || repeat_last_n > 0x7fffffff)
    return Error("cuda sampler: repeat_last_n {}", repeat_last_n);
  SampleWorkspace ws;
  ws.n_vocab = n_vocab;
  ws.repeat_last_n = repeat_last_n;
  const size_t ring = static_cast<size_t>(std::max<int64_t>(1, repeat_last_n));
  KTX_ASSIGN_OR_RETURN(ws.work, DeviceBuffer::alloc(static_cast<size_t>(n_vocab) * sizeof(float)));
  KTX_ASSIGN_OR_RETURN(ws.wbuf, DeviceBuffer::alloc(static_cast<size_t>(n_vocab) * sizeof(uint64_t)));
  KTX_ASSIGN_OR_RETURN(ws.ring, DeviceBuffer::alloc(ring * sizeof(int32_t)));
  KTX_ASSIGN_OR_RETURN(ws.ring_pos, DeviceBuffer::alloc(sizeof(int64_t)));
  KTX_ASSIGN_OR_RETURN(ws.rng, DeviceBuffer::alloc(4 * sizeof(uint64_t)));
  KTX_RETURN_IF_ERROR(ws.reset(0, {}));
  return ws;
}

Status SampleWorkspace::reset(uint64_t seed, const std::vector<int32_t>& history) {
  // The ring in append order from slot 0: the last repeat_last_n of the history, then empty.
  const size_t cap = static_cast<size_t>(std::max<int64_t>(1, repeat_last_n));
  std::vector<int32_t> ring_host(cap, -1);
  int64_t pos = 0;
  if (repeat_last_n > 0) {
    const size_t from = history.size() > cap ? history.size() - cap : 0;
    for (size_t i = from; i < history.size(); ++i) ring_host[static_cast<size_t>(pos++)] = history[i];
  }
  uint64_t state[4];
  for (uint64_t& w : state) w = splitmix64(seed);  // Xoshiro256's constructor
  KTX_RETURN_IF_ERROR(ring.upload(ring_host.data(), cap * sizeof(int32_t)));
  KTX_RETURN_IF_ERROR(ring_pos.upload(&pos, sizeof(pos)));
  KTX_RETURN_IF_ERROR(rng.upload(state, sizeof(state)));
  return Status::ok();
}

Status router_layer(const Kernels& k, const RouterKernels& rk, const ModelConfig& c,
                    int64_t layer, const TensorLookup& lookup, const float* h, int64_t n_tok,
                    int32_t* ids, float* weights, RouterWorkspace& ws, cudaStream_t stream) {
  if (n_tok > ws.max_tokens || ws.n_expert != c.n_expert)
    return Error("cuda router: {} tokens of {} experts, workspace made for {} of {}", n_tok,
                 c.n_expert, ws.max_tokens, ws.n_expert);
  const std::string b = fmt::format("blk.{}.", layer);
  const std::string wname = b + "ffn_gate_inp.weight";
  KTX_ASSIGN_OR_RETURN(DevTensor w, lookup(wname));
  KTX_RETURN_IF_ERROR(check_tensor(w, wname, c.n_embd, c.n_expert));
  const float* bias = nullptr;
  if (c.exp_probs_bias) {
    const std::string bname = b + "exp_probs_b.bias";
    KTX_ASSIGN_OR_RETURN(DevTensor bt, lookup(bname));
    if (bt.type != GGMLType::F32 || bt.row_len * bt.n_rows != c.n_expert)
      return Error("cuda router: tensor '{}' must be {} F32 values", bname, c.n_expert);
    bias = static_cast<const float*>(bt.data);
  }
  float* logits = ws.logits.as<float>();  // [n_tok, n_expert]
  for (int64_t t0 = 0; t0 < n_tok; t0 += kGemvMaxTokens) {
    const int64_t nt = std::min<int64_t>(kGemvMaxTokens, n_tok - t0);
    KTX_RETURN_IF_ERROR(k.gemv(w.type, w.data, w.row_bytes, h + t0 * c.n_embd, c.n_embd,
                               logits + t0 * c.n_expert, c.n_expert, c.n_expert, c.n_embd, nt, stream));
  }
  return rk.route(RouterDesc::from(c), logits, c.n_expert, bias, n_tok, ids, weights, stream);
}

Status shexp_gate(const Kernels& k, const RouterKernels& rk, const ModelConfig& c, int64_t layer,
                  const TensorLookup& lookup, const float* h, int64_t n_tok, float* out,
                  RouterWorkspace& ws, cudaStream_t stream) {
  if (!c.shexp_gate) return Status::ok();
  if (n_tok > ws.max_tokens)
    return Error("cuda shexp gate: {} tokens, workspace made for {}", n_tok, ws.max_tokens);
  const std::string name = fmt::format("blk.{}.ffn_gate_inp_shexp.weight", layer);
  KTX_ASSIGN_OR_RETURN(DevTensor w, lookup(name));
  if (w.row_len != c.n_embd || w.n_rows != 1)
    return Error("cuda shexp gate: tensor '{}' is [{}, {}], expected [{}] ", name, w.row_len,
                 w.n_rows, c.n_embd);
  float* gate = ws.gate.as<float>();  // [n_tok]
  for (int64_t t0 = 0; t0 < n_tok; t0 += kGemvMaxTokens) {
    const int64_t nt = std::min<int64_t>(kGemvMaxTokens, n_tok - t0);
    KTX_RETURN_IF_ERROR(k.gemv(w.type, w.data, w.row_bytes, h + t0 * c.n_embd, c.n_embd,
                               gate + t0, 1, 1, c.n_embd, nt, stream));
  }
  return rk.shexp_gate(gate, out, c.n_embd, c.n_embd, n_tok, stream);
}

Status sample(const RouterKernels& rk, const SamplerParams& p, const float* logits,
              SampleWorkspace& ws, const double* u, int32_t* token, cudaStream_t stream) {
  // The ring holds the workspace's window; a different window would need other entries.
  if (p.repeat_last_n != ws.repeat_last_n)
    return Error("cuda sampler: repeat_last_n {}, the workspace was made for {}",
                 p.repeat_last_n, ws.repeat_last_n);
  const int64_t n_recent = p.repeat_penalty != 1.0f ? ws.repeat_last_n : 0;
  return rk.sample(p, logits, ws.n_vocab, ws.ring.as<int32_t>(), n_recent, u,
                   u ? nullptr : ws.rng.as<uint64_t>(), ws.work.as<float>(),
                   ws.wbuf.as<uint64_t>(), token, stream);
}

Status sample_accept(const RouterKernels& rk, SampleWorkspace& ws, const int32_t* token,
                     cudaStream_t stream) {
  return rk.sample_accept(ws.ring.as<int32_t>(), ws.repeat_last_n, ws.ring_pos.as<int64_t>(),
                          token, stream);
}

}  // namespace ktx::cuda
