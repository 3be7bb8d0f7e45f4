// BatchStep::run: one pass of the program over the tokens of several sequences (continuous
// batching, engine.h). The op loop is Session::forward's, over the entries' tokens concatenated
// in a workspace arena; two ops are special:
//  - attention runs once per entry, on that entry's rows, with its session's KV cache and
//    position: its input rows are copied into the session's own arena, the backend runs the op
//    there as for a single-sequence call, and the output rows are copied back. Every backend
//    therefore sees only the calls it already runs.
//  - lm_head computes only the rows that want logits: those rows are moved (in order) to the
//    end of its input buffer, so the op's "rows [first_logit, n_tok)" contract covers them.
// A step with one entry runs its attention in place (no copies).
// Each entry's KV blocks are reserved before the op loop and committed after it.
#include <algorithm>
#include <cstring>
#include <set>

#include "runtime/engine/engine_internal.h"

namespace ktx {

BatchStep::BatchStep(const Model& m) : model_(m), work_(std::make_unique<SessionCache>()) {}
BatchStep::~BatchStep() = default;

uint64_t BatchStep::arena_bytes() const {
  uint64_t n = 0;
  for (const auto& b : work_->arena.act) n += b.capacity() * sizeof(float);
  for (const auto& b : work_->arena.route_ids) n += b.capacity() * sizeof(int32_t);
  for (const auto& b : work_->arena.route_weights) n += b.capacity() * sizeof(float);
  return n;
}

Expected<std::vector<float>> BatchStep::run(std::span<const BatchEntry> entries) {
  const ModelImpl& m = model_.impl();
  const ModelConfig& c = m.cfg;
  const int64_t D = c.n_embd;
  if (entries.empty()) return Error("engine: batch step with no sequences");

  // 1. Check every entry before anything changes; concatenate the tokens.
  std::set<const Session*> seen;
  std::vector<int32_t> tokens;
  std::vector<int64_t> row0(entries.size());  // first row of each entry in the batch
  std::vector<int64_t> logit_rows;            // the rows whose logits are returned
  for (size_t e = 0; e < entries.size(); ++e) {
    const BatchEntry& be = entries[e];
    if (!be.session || &be.session->model_ != &model_)
      return Error("engine: batch entry {}: no session, or a session of another model", e);
    if (!seen.insert(be.session).second)
      return Error("engine: batch entry {}: its session is already in this step", e);
    const int64_t n = static_cast<int64_t>(be.tokens.size());
    if (n == 0) return Error("engine: batch entry {} has no tokens", e);
    if (be.session->n_past_ + n > be.session->n_ctx_)
      return Error("engine: batch entry {}: context overflow: {} cached + {} new tokens exceed "
                   "n_ctx = {}", e, be.session->n_past_, n, be.session->n_ctx_);
    for (int64_t t = 0; t < n; ++t)
      if (be.tokens[t] < 0 || be.tokens[t] >= c.n_vocab)
        return Error("engine: batch entry {}: token id {} at index {} is out of range [0, {})", e,
                     be.tokens[t], t, c.n_vocab);
    row0[e] = static_cast<int64_t>(tokens.size());
    tokens.insert(tokens.end(), be.tokens.begin(), be.tokens.end());
    if (be.want_logits) logit_rows.push_back(row0[e] + n - 1);
  }
  // A backend that drives whole calls (the GPU's) keeps its device KV cache, arena and graphs
  // per session: each entry runs its own forward, one after another (the results are the
  // same; the step is not one pass, so the experts see each sequence's tokens apart).
  if (m.driver) {
    std::vector<float> out;
    for (const BatchEntry& be : entries) {
      KTX_ASSIGN_OR_RETURN(std::vector<float> l, be.session->forward(be.tokens, false));
      if (be.want_logits) out.insert(out.end(), l.begin(), l.end());
    }
    return out;
  }
  const int64_t T = static_cast<int64_t>(tokens.size());
  const int64_t n_out = static_cast<int64_t>(logit_rows.size());
  auto trim_all = [&] {
    for (const BatchEntry& be : entries) be.session->trim();
  };
  for (size_t e = 0; e < entries.size(); ++e) {
    if (Status st = entries[e].session->reserve(static_cast<int64_t>(entries[e].tokens.size()));
        !st.is_ok()) {
      trim_all();
      return Error("engine: batch entry {}: {}", e, st.message());
    }
  }

  // 2. The op loop over all T rows. The batch's StepCtx has n_past 0: only attention reads
  //    positions, and it gets each entry's own.
  const Program& prog = m.program;
  Arena& arena = work_->arena;
  size_arena(prog, T, n_out, D, arena);
  const bool single = entries.size() == 1;
  Session& only = *entries[0].session;
  StepCtx s{m, *m.pool, single ? only.n_past_ : 0, T, nullptr, nullptr, nullptr, nullptr};
  OpCall call{s, tokens, single ? *only.cache_ : *work_, arena, T - n_out};
  for (const ProgramOp& op : prog.ops) {
    if (op.kind == OpKind::lm_head) {
      if (n_out == 0) break;
      // Rows move to the tail in order; row i's source is never after its destination, and
      // going from the last row down never overwrites a source still to be read.
      float* x = arena.act[static_cast<size_t>(op.in[0])].data();
      for (int64_t i = n_out - 1; i >= 0; --i) {
        const int64_t src = logit_rows[static_cast<size_t>(i)], dst = T - n_out + i;
        if (src != dst) std::memmove(x + dst * D, x + src * D, static_cast<size_t>(D) * sizeof(float));
      }
    }
    if (op.kind != OpKind::attention || single) {
      if (Status st = op.backend->run(op, call).with_context(op.name); !st.is_ok()) {
        trim_all();
        return st;
      }
      continue;
    }
    const size_t in = static_cast<size_t>(op.in[0]), out = static_cast<size_t>(op.out);
    // Rows are [n_tok][n_embd] whatever the buffer's width (its widest value).
    for (size_t e = 0; e < entries.size(); ++e) {
      Session& ses = *entries[e].session;
      const int64_t n = static_cast<int64_t>(entries[e].tokens.size());
      Arena& own = ses.cache_->arena;
      size_arena(prog, n, 1, D, own);
      std::copy_n(arena.act[in].data() + row0[e] * D, n * D, own.act[in].data());
      StepCtx se{m, *m.pool, ses.n_past_, n, nullptr, nullptr, nullptr, nullptr};
      OpCall ce{se, entries[e].tokens, *ses.cache_, own, n - 1};
      if (Status st = op.backend->run(op, ce).with_context(op.name); !st.is_ok()) {
        trim_all();
        return st;
      }
      std::copy_n(own.act[out].data(), n * D, arena.act[out].data() + row0[e] * D);
    }
  }
  for (const BatchEntry& be : entries) be.session->commit(be.tokens);
  if (n_out == 0) return std::vector<float>{};
  const float* logits = arena.act[static_cast<size_t>(prog.logits_buffer)].data();
  return std::vector<float>(logits, logits + n_out * c.n_vocab);  // [n_out, n_vocab]
}

}  // namespace ktx
