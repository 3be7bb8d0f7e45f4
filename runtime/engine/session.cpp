// Session::forward: one call runs a batch of tokens of one sequence through the model's
// program (the plan's op list, program.h), op by op on the backend of each op's device, with
// the activations in the plan's arena buffers, and returns logits. Prefill and decode share
// this code; only n_tok differs.
#include <algorithm>

#include "runtime/engine/engine_internal.h"

namespace ktx {

void size_arena(const Program& prog, int64_t n_tok, int64_t n_out, int64_t n_embd, Arena& arena) {
  arena.act.resize(prog.buffers.size());
  arena.route_ids.resize(prog.buffers.size());
  arena.route_weights.resize(prog.buffers.size());
  for (size_t b = 0; b < prog.buffers.size(); ++b) {
    const int64_t width = prog.buffers[b].width;
    if (prog.buffers[b].kind == "route") {
      arena.route_ids[b].resize(static_cast<size_t>(n_tok * width));
      arena.route_weights[b].resize(static_cast<size_t>(n_tok * width));
    } else if (static_cast<int>(b) == prog.logits_buffer) {
      // Only the rows asked for are computed; the buffer may hold [T][n_embd] values earlier.
      arena.act[b].resize(static_cast<size_t>(std::max(n_out * width, n_tok * n_embd)));
    } else {
      arena.act[b].resize(static_cast<size_t>(n_tok * width));
    }
  }
}

DeviceStats Session::device_stats() const {
  return cache_->driver_state ? cache_->driver_state->stats() : DeviceStats{};
}

uint64_t Session::arena_bytes() const {
  uint64_t n = 0;
  for (const auto& b : cache_->arena.act) n += b.capacity() * sizeof(float);
  for (const auto& b : cache_->arena.route_ids) n += b.capacity() * sizeof(int32_t);
  for (const auto& b : cache_->arena.route_weights) n += b.capacity() * sizeof(float);
  return n;
}

Expected<std::vector<float>> Session::forward(std::span<const int32_t> tokens, bool all_logits) {
  const ModelImpl& m = model_.impl();
  const ModelConfig& c = m.cfg;
  const int64_t T = static_cast<int64_t>(tokens.size());
  if (T == 0) return Error("engine: forward called with no tokens");
  if (n_past_ + T > n_ctx_)
    return Error("engine: context overflow: {} cached + {} new tokens exceed n_ctx = {}", n_past_,
                 T, n_ctx_);
  for (int64_t t = 0; t < T; ++t)
    if (tokens[t] < 0 || tokens[t] >= c.n_vocab)
      return Error("engine: token id {} at index {} is out of range [0, {})", tokens[t], t, c.n_vocab);
  const int64_t chunk = m.driver ? m.driver->max_call_tokens(all_logits) : T;
  if (T <= chunk) return forward_chunk(tokens, all_logits);
  // Longer calls in chunks: a prefill of T tokens computes what T decode steps compute, so the
  // split changes nothing but the size of the buffers.
  std::vector<float> logits;
  const int64_t n_past0 = n_past_;
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t n = std::min(chunk, T - t0);
    auto part = forward_chunk(tokens.subspan(static_cast<size_t>(t0), static_cast<size_t>(n)),
                              all_logits);
    if (!part) {
      truncate(n_past0);
      return part.status();
    }
    if (all_logits || t0 + n == T) logits.insert(logits.end(), part->begin(), part->end());
  }
  return logits;
}

void Session::observe(const ProgramOp& op, const float* out, int64_t T) {
  const ModelConfig& c = model_.impl().cfg;
  const int64_t D = c.n_embd;
  if (op.kind == OpKind::router) return;
  if (trace_hook_ && op.kind != OpKind::lm_head) trace_hook_(op.name, out, T, D);
  if (!hidden_hook_) return;
  // HF's hidden_states: the embeddings, each layer's output, the final norm's output.
  if (op.kind == OpKind::embed) hidden_hook_(0, std::span<const float>(out, T * D), T);
  if (op.kind == OpKind::add && op.layer + 1 < c.n_layer &&
      op.name == fmt::format("blk.{}.ffn_residual", op.layer))
    hidden_hook_(op.layer + 1, std::span<const float>(out, T * D), T);
  if (op.kind == OpKind::rms_norm && op.layer < 0)
    hidden_hook_(c.n_layer, std::span<const float>(out, T * D), T);
}

Expected<std::vector<float>> Session::forward_chunk(std::span<const int32_t> tokens,
                                                    bool all_logits) {
  const ModelImpl& m = model_.impl();
  const ModelConfig& c = m.cfg;
  const int64_t T = static_cast<int64_t>(tokens.size()), D = c.n_embd;
  StepCtx s{m, *m.pool, n_past_, T, &trace_hook_, profile_, route_record_, route_replay_};
  const Program& prog = m.program;
  const int64_t first = all_logits ? 0 : T - 1, n_out = T - first;
  Arena& arena = cache_->arena;
  size_arena(prog, T, n_out, D, arena);

  KTX_RETURN_IF_ERROR(reserve(T));
  OpCall call{s, tokens, *cache_, arena, first, n_ctx_};
  const bool hooks = trace_hook_ || hidden_hook_;
  Status st = Status::ok();
  if (m.driver) {
    OpObserver obs;
    if (hooks) obs = [&](const ProgramOp& op, const float* out) { observe(op, out, T); };
    st = m.driver->run_call(prog, call, obs);
  } else {
    for (const ProgramOp& op : prog.ops) {
      {
        OpTimer timer(profile_, op_kind_name(op.kind));
        st = op.backend->run(op, call).with_context(op.name);
      }
      if (!st.is_ok()) break;
      if (hooks) observe(op, arena.act[static_cast<size_t>(op.out)].data(), T);
    }
  }
  if (!st.is_ok()) {
    trim();
    return st;
  }
  const float* logits = arena.act[static_cast<size_t>(prog.logits_buffer)].data();
  commit(tokens);
  return std::vector<float>(logits, logits + n_out * c.n_vocab);  // [n_out, n_vocab]
}

}  // namespace ktx
