// Feed-forward blocks: the dense SiLU-gated FFN (also the shared experts) and the routed MoE.
// Routed experts run expert by expert over the tokens routed to each (rows of the 3-D expert
// tensors are sliced per expert, never dequantized whole); each token's expert outputs are
// kept per slot and summed in slot order, so the result of a token does not depend on which
// other tokens were in the call. Layers for which the plan chose fast kernels run them instead
// (moe_fast.h); routing is the same float32 code for both.
#include <algorithm>
#include <cmath>

#include "runtime/cpu/vec_math.h"
#include "runtime/engine/engine_internal.h"

namespace ktx {
namespace {

// dst [n, n_embd] = down(silu(gate x) * up x) for the rows [row0, row0 + n_hidden) of the
// gate/up tensors and the matching slice of down (rows down_row0.., each n_hidden long).
void swiglu(const StepCtx& s, const std::string& gate, const std::string& up,
            const std::string& down, int64_t row0, int64_t n_hidden, int64_t down_row0,
            const float* x, int64_t n, float* dst) {
  const int64_t n_embd = s.m.cfg.n_embd;
  float* g = scratch(Scratch::ffn_gate, n * n_hidden);  // [n, n_hidden]
  float* u = scratch(Scratch::ffn_up, n * n_hidden);    // [n, n_hidden]
  linear(s, gate, row0, n_hidden, x, n_embd, n, g, n_hidden);
  linear(s, up, row0, n_hidden, x, n_embd, n, u, n_hidden);
  cpu::parallel_range(s.pool, n * n_hidden, 1 << 15, [&](int64_t i0, int64_t i1) {
    cpu::silu_mul(g + i0, u + i0, g + i0, i1 - i0);
  });
  linear(s, down, down_row0, n_embd, g, n_hidden, n, dst, n_embd);
}

// The exact float32 routed experts: (token, slot) pairs grouped by expert, each expert run
// once on its tokens, outputs summed per token in slot order.
void routed_reference(const StepCtx& s, const std::string& b, const float* h,
                      const std::vector<int32_t>& chosen, const std::vector<float>& weights,
                      float* dst) {
  const ModelConfig& c = s.m.cfg;
  const int64_t T = s.n_tok, E = c.n_expert, K = c.n_expert_used, D = c.n_embd;
  std::vector<std::vector<int64_t>> slots_of(E);  // t * K + slot
  for (int64_t i = 0; i < T * K; ++i) slots_of[chosen[i]].push_back(i);
  std::vector<float> slot_out(T * K * D);  // [T, K, n_embd]
  const std::string gate = b + "ffn_gate_exps.weight", up = b + "ffn_up_exps.weight";
  const std::string down = b + "ffn_down_exps.weight";
  std::vector<float> x, y;
  for (int64_t e = 0; e < E; ++e) {
    const auto& slots = slots_of[e];
    const int64_t n = static_cast<int64_t>(slots.size());
    if (n == 0) continue;
    x.resize(n * D);
    y.resize(n * D);
    for (int64_t i = 0; i < n; ++i) std::copy_n(h + (slots[i] / K) * D, D, &x[i * D]);
    swiglu(s, gate, up, down, e * c.n_ff_exp, c.n_ff_exp, e * D, x.data(), n, y.data());
    for (int64_t i = 0; i < n; ++i) std::copy_n(&y[i * D], D, &slot_out[slots[i] * D]);
  }
  for (int64_t t = 0; t < T; ++t) {
    float* d = dst + t * D;
    std::fill(d, d + D, 0.0f);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = 0; i < D; ++i) d[i] += weights[t * K + k] * slot_out[(t * K + k) * D + i];
  }
}

}  // namespace

void ffn_dense(const StepCtx& s, const std::string& prefix, const std::string& suffix,
               const float* h, float* dst) {
  const std::string gate = prefix + "ffn_gate" + suffix + ".weight";
  swiglu(s, gate, prefix + "ffn_up" + suffix + ".weight", prefix + "ffn_down" + suffix + ".weight",
         0, s.m.w(gate).n_rows(), 0, h, s.n_tok, dst);
}

void route_tokens(const StepCtx& s, int64_t il, const float* h, int32_t* chosen, float* weights) {
  const ModelConfig& c = s.m.cfg;
  const std::string b = fmt::format("blk.{}.", il);
  const int64_t T = s.n_tok, E = c.n_expert, K = c.n_expert_used;
  float* logits = scratch(Scratch::router_logits, T * E);  // [T, n_expert]
  std::vector<float> buf;
  linear(s, b + "ffn_gate_inp.weight", h, logits);
  s.emit(b + "ffn_moe_logits", logits, E);
  const float* bias = c.exp_probs_bias ? small_tensor(s.m.w(b + "exp_probs_b.bias"), buf) : nullptr;
  const int32_t* forced = nullptr;
  if (s.route_replay) {
    const std::vector<int32_t>& log = s.route_replay->ids[il];
    size_t& at = s.route_replay->next[il];
    if (at + static_cast<size_t>(T * K) <= log.size()) forced = log.data() + at;
    at += static_cast<size_t>(T * K);  // past the end: the router decides (a shorter log)
  }
  cpu::parallel_range(s.pool, T, 4, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      route_token(c, &logits[t * E], bias, &chosen[t * K], &weights[t * K],
                  forced ? forced + t * K : nullptr);
  });
  if (s.route_record) {
    std::vector<int32_t>& log = s.route_record->ids[il];
    log.insert(log.end(), chosen, chosen + T * K);
  }
  s.emit(b + "ffn_moe_weights", weights, K);
  if (s.profile) {
    std::vector<int64_t>& load = s.profile->expert_tokens[il];
    load.resize(static_cast<size_t>(E));
    for (int64_t i = 0; i < T * K; ++i) ++load[static_cast<size_t>(chosen[i])];
  }
}

Status routed_experts(const StepCtx& s, int64_t il, const float* h, const int32_t* chosen,
                      const float* weights, float* dst) {
  const ModelConfig& c = s.m.cfg;
  if (MoeFastLayer* f = s.m.moe_fast.empty() ? nullptr : s.m.moe_fast[il].get())
    return run_fast_moe(s, *f, h, chosen, weights, dst);
  const int64_t n = s.n_tok * c.n_expert_used;
  routed_reference(s, fmt::format("blk.{}.", il), h, std::vector<int32_t>(chosen, chosen + n),
                   std::vector<float>(weights, weights + n), dst);
  return Status::ok();
}

void shared_experts(const StepCtx& s, int64_t il, const float* h, float* dst) {
  const ModelConfig& c = s.m.cfg;
  const std::string b = fmt::format("blk.{}.", il);
  const int64_t T = s.n_tok, D = c.n_embd;
  ffn_dense(s, b, "_shexp", h, dst);
  if (!c.shexp_gate) return;
  std::vector<float> buf;
  const float* gw = small_tensor(s.m.w(b + "ffn_gate_inp_shexp.weight"), buf);
  for (int64_t t = 0; t < T; ++t) {
    const float g = 1.0f / (1.0f + std::exp(-dot_f32(gw, h + t * D, D)));
    for (int64_t i = 0; i < D; ++i) dst[t * D + i] *= g;
  }
}

}  // namespace ktx
