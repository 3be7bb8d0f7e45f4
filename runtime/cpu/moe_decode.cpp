// MoeDecode: see moe_decode.h. Tokens are grouped by expert into (token, expert) "pairs" laid
// out expert by expert, so each expert's inputs and outputs are contiguous rows and one GEMV
// call covers all tokens routed to it (each weight row is read from memory once per call).
// The work is cut into five kinds of task (quantize a block of a token's input, gate/up rows of
// an expert, h of a pair, down rows of an expert, combine a block of output rows); the phased
// path runs each kind as a pool phase, the fused path runs them all in one (see the header).
#include "runtime/cpu/moe_decode.h"
#include "runtime/cpu/vec_math.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "runtime/cpu/topology.h"

namespace ktx::cpu {
namespace {

uint64_t row_bytes(GGMLType type, int64_t n) { return ggml_row_bytes(type, n).value(); }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Input elements one quantize task covers: a multiple of every activation block (256), small
// enough that one token's input (up to 7168 elements) spreads over a few threads.
constexpr int64_t kQuantChunk = 2048;

// Spins until `c` reaches `target`. The awaited tasks are already running on other threads (a
// task waits only for earlier ones), so the wait is short; yield if it is not (oversubscribed).
void wait_for(const std::atomic<int64_t>& c, int64_t target) {
  for (int i = 0; c.load(std::memory_order_acquire) < target; ++i) {
    if (i < 4096) {
      _mm_pause();
    } else {
      std::this_thread::yield();
    }
  }
}

}  // namespace

Expected<std::unique_ptr<MoeDecode>> MoeDecode::create(const MoeDesc& desc,
                                                       const MoeConfig& config,
                                                       const CpuIsa& cpu) {
  return create(desc, config, cpu, MoeDecodeOptions{});
}

Expected<std::unique_ptr<MoeDecode>> MoeDecode::create(const MoeDesc& desc,
                                                       const MoeConfig& config,
                                                       const CpuIsa& cpu,
                                                       const MoeDecodeOptions& options) {
  KTX_RETURN_IF_ERROR(desc.validate());
  KTX_RETURN_IF_ERROR(config.validate().with_context(desc.to_string()));
  std::unique_ptr<MoeDecode> moe(new MoeDecode(desc, config, options));
  const struct { GGMLType type; int64_t k; std::unique_ptr<GemvKernel>* dst; } kernels[] = {
      {desc.gate_type, desc.n_embd, &moe->gate_},
      {desc.up_type, desc.n_embd, &moe->up_},
      {desc.down_type, desc.n_ff, &moe->down_}};
  for (const auto& k : kernels) {
    GemvDesc gd{k.type, k.k, config.unroll, desc.isa};
    auto kernel = make_gemv_tuned(gd, cpu, options.gemv);
    if (!kernel) return kernel.status().with_context(desc.to_string());
    *k.dst = std::move(kernel).value();
  }
  moe->shared_act_ = moe->gate_->act_format() == moe->up_->act_format();
  return moe;
}

ActRounding MoeDecode::act_rounding() const {
  return {gate_->act_format(), up_->act_format(), down_->act_format()};
}

std::string MoeDecode::kernel_names() const {
  return fmt::format("gate={} up={} down={}", gate_->name(), up_->name(), down_->name());
}

void MoeDecode::group_by_expert(const MoeRouting& routing) {
  const int64_t n_slots = routing.n_tokens * desc_.top_k;
  std::vector<int64_t> count(static_cast<size_t>(desc_.n_expert), 0);
  for (int64_t s = 0; s < n_slots; ++s) ++count[routing.expert_ids[s]];
  active_experts_.clear();
  pair_begin_.assign(1, 0);
  std::vector<int64_t> cursor(static_cast<size_t>(desc_.n_expert), 0);
  for (int64_t e = 0; e < desc_.n_expert; ++e) {
    if (count[e] == 0) continue;
    cursor[e] = pair_begin_.back();
    active_experts_.push_back(static_cast<int32_t>(e));
    pair_begin_.push_back(pair_begin_.back() + count[e]);
  }
  pair_token_.resize(static_cast<size_t>(n_slots));
  slot_pair_.resize(static_cast<size_t>(n_slots));
  for (int64_t s = 0; s < n_slots; ++s) {  // slot order keeps each expert's tokens ascending
    const int64_t p = cursor[routing.expert_ids[s]]++;
    pair_token_[p] = s / desc_.top_k;
    slot_pair_[s] = p;
  }
}

void MoeDecode::size_buffers() {
  const int64_t n_pairs = static_cast<int64_t>(pair_token_.size());
  g_.resize(n_pairs * desc_.n_ff);
  u_.resize(n_pairs * desc_.n_ff);
  d_.resize(n_pairs * desc_.n_embd);
  act_gate_.resize(n_pairs * act_row_bytes(gate_->act_format(), desc_.n_embd));
  if (!shared_act_) act_up_.resize(n_pairs * act_row_bytes(up_->act_format(), desc_.n_embd));
  act_down_.resize(n_pairs * act_row_bytes(down_->act_format(), desc_.n_ff));
}

// Quantizes elements [chunk·kQuantChunk, +kQuantChunk) of token t's input straight into the
// activation rows of each of its pairs (no per-token staging copy).
void MoeDecode::quantize_task(const float* x, int64_t t, int64_t chunk) {
  const int64_t K = desc_.n_embd, top_k = desc_.top_k;
  const int64_t e0 = chunk * kQuantChunk, len = std::min(kQuantChunk, K - e0);
  const struct { ActFormat f; std::vector<uint8_t>* dst; } outs[] = {
      {gate_->act_format(), &act_gate_}, {up_->act_format(), &act_up_}};
  for (int i = 0; i < (shared_act_ ? 1 : 2); ++i) {
    const size_t rb = act_row_bytes(outs[i].f, K), off = act_row_bytes(outs[i].f, e0);
    const int64_t p0 = slot_pair_[t * top_k];
    uint8_t* first = outs[i].dst->data() + p0 * rb + off;
    quantize_act_row(outs[i].f, x + t * K + e0, first, len);
    const size_t bytes = act_row_bytes(outs[i].f, len);
    for (int64_t j = 1; j < top_k; ++j) {
      std::memcpy(outs[i].dst->data() + slot_pair_[t * top_k + j] * rb + off, first, bytes);
    }
  }
}

void MoeDecode::gate_up_task(const MoeWeights& weights, int64_t a, int64_t chunk) {
  const int64_t K = desc_.n_embd, N = desc_.n_ff, r0 = chunk * config_.rows_per_task;
  const int64_t e = active_experts_[a], p0 = pair_begin_[a];
  const struct { const GemvKernel* k; GGMLType type; const void* w; const std::vector<uint8_t>* act;
                 std::vector<float>* out; } mats[] = {
      {gate_.get(), desc_.gate_type, weights.gate, &act_gate_, &g_},
      {up_.get(), desc_.up_type, weights.up, shared_act_ ? &act_gate_ : &act_up_, &u_}};
  for (const auto& m : mats) {
    const uint64_t rb = row_bytes(m.type, K);
    const size_t ab = act_row_bytes(m.k->act_format(), K);
    GemvArgs args;
    args.w = static_cast<const uint8_t*>(m.w) + (e * N + r0) * rb;
    args.w_stride = static_cast<int64_t>(rb);
    args.act = m.act->data() + p0 * ab;
    args.act_stride = static_cast<int64_t>(ab);
    args.out = m.out->data() + p0 * N + r0;  // [pairs][n_ff]
    args.out_stride = N;
    args.n_rows = std::min(config_.rows_per_task, N - r0);
    args.n_tokens = pair_begin_[a + 1] - p0;
    m.k->run(args);
  }
}

void MoeDecode::h_task(int64_t p) {
  const int64_t N = desc_.n_ff;
  const ActFormat fd = down_->act_format();
  float* h = g_.data() + p * N;  // h = SiLU(g) * u, in place of g
  const float* u = u_.data() + p * N;
  silu_mul(h, u, h, N);
  quantize_act_row(fd, h, act_down_.data() + p * act_row_bytes(fd, N), N);
}

void MoeDecode::down_task(const MoeWeights& weights, int64_t a, int64_t chunk) {
  const int64_t K = desc_.n_embd, N = desc_.n_ff, r0 = chunk * config_.rows_per_task;
  const int64_t e = active_experts_[a], p0 = pair_begin_[a];
  const uint64_t rb = row_bytes(desc_.down_type, N);
  const size_t ab = act_row_bytes(down_->act_format(), N);
  GemvArgs args;
  args.w = static_cast<const uint8_t*>(weights.down) + (e * K + r0) * rb;
  args.w_stride = static_cast<int64_t>(rb);
  args.act = act_down_.data() + p0 * ab;
  args.act_stride = static_cast<int64_t>(ab);
  args.out = d_.data() + p0 * K + r0;  // [pairs][n_embd]
  args.out_stride = K;
  args.n_rows = std::min(config_.rows_per_task, K - r0);
  args.n_tokens = pair_begin_[a + 1] - p0;
  down_->run(args);
}

// out[t][k] = Σ_j w_tj · d[pair of slot (t, j)][k] for k in the chunk, every token, in slot
// order (the same float operations whatever the task split: deterministic).
void MoeDecode::combine_task(const MoeRouting& routing, float* out, int64_t chunk) {
  const int64_t K = desc_.n_embd, top_k = desc_.top_k;
  const int64_t k0 = chunk * config_.rows_per_task;
  const int64_t k1 = std::min(K, k0 + config_.rows_per_task);
  for (int64_t t = 0; t < routing.n_tokens; ++t) {
    float* o = out + t * K;  // [n_embd]
    std::fill(o + k0, o + k1, 0.0f);
    for (int64_t j = 0; j < top_k; ++j) {
      const float w = routing.weights[t * top_k + j];
      const float* d = d_.data() + slot_pair_[t * top_k + j] * K;
      for (int64_t k = k0; k < k1; ++k) o[k] += w * d[k];
    }
  }
}

// Five pool phases. With `by_node`, the gate/up and down phases put each (expert, chunk) task on
// the queue of the node holding its rows (map_nodes() has run).
void MoeDecode::run_phased(const MoeWeights& weights, const float* x, const MoeRouting& routing,
                           float* out, ThreadPool& pool, bool by_node) {
  const int64_t n_active = static_cast<int64_t>(active_experts_.size());
  const int64_t n_pairs = static_cast<int64_t>(pair_token_.size());
  const int64_t nq = ceil_div(desc_.n_embd, kQuantChunk);
  const int64_t cg = ceil_div(desc_.n_ff, config_.rows_per_task);
  const int64_t cd = ceil_div(desc_.n_embd, config_.rows_per_task);
  auto rows_phase = [&](const std::vector<int8_t>& nodes, int64_t chunks,
                        const std::function<void(int64_t, int64_t)>& task) {
    if (by_node) {
      run_by_node(nodes, chunks, pool, task);
    } else {
      pool.parallel_for(n_active * chunks, [&](int64_t i) { task(i / chunks, i % chunks); });
    }
  };
  pool.parallel_for(routing.n_tokens * nq,
                    [&](int64_t i) { quantize_task(x, i / nq, i % nq); });
  rows_phase(gu_node_, cg, [&](int64_t a, int64_t c) { gate_up_task(weights, a, c); });
  pool.parallel_for(n_pairs, [&](int64_t p) { h_task(p); });
  rows_phase(down_node_, cd, [&](int64_t a, int64_t c) { down_task(weights, a, c); });
  pool.parallel_for(cd, [&](int64_t c) { combine_task(routing, out, c); });
}

// Task index ranges, in order: quantize (token, chunk) | gate/up (expert, chunk) | down (expert,
// chunk) | combine (chunk). Counters: [0] quantize tasks done; [1 + a] gate/up chunks of
// expert a done; [1 + A + a] h of expert a ready; [1 + 2A + c] experts with down chunk c done.
void MoeDecode::run_fused(const MoeWeights& weights, const float* x, const MoeRouting& routing,
                          float* out, ThreadPool& pool) {
  const int64_t A = static_cast<int64_t>(active_experts_.size());
  const int64_t nq = ceil_div(desc_.n_embd, kQuantChunk);
  const int64_t cg = ceil_div(desc_.n_ff, config_.rows_per_task);
  const int64_t cd = ceil_div(desc_.n_embd, config_.rows_per_task);
  const int64_t n_quant = routing.n_tokens * nq, n_gu = A * cg, n_down = A * cd;
  const int64_t n_counters = 1 + 2 * A + cd;
  if (counters_size_ < n_counters) {
    counters_ = std::make_unique<std::atomic<int64_t>[]>(static_cast<size_t>(n_counters));
    counters_size_ = n_counters;
  }
  for (int64_t i = 0; i < n_counters; ++i) counters_[i].store(0, std::memory_order_relaxed);
  std::atomic<int64_t>& quant_done = counters_[0];
  std::atomic<int64_t>* gu_done = &counters_[1];
  std::atomic<int64_t>* h_ready = &counters_[1 + A];
  std::atomic<int64_t>* down_done = &counters_[1 + 2 * A];
  pool.parallel_for(n_quant + n_gu + n_down + cd, [&](int64_t i) {
    if (i < n_quant) {
      quantize_task(x, i / nq, i % nq);
      quant_done.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    i -= n_quant;
    if (i < n_gu) {
      const int64_t a = i / cg;
      wait_for(quant_done, n_quant);
      gate_up_task(weights, a, i % cg);
      if (gu_done[a].fetch_add(1, std::memory_order_acq_rel) == cg - 1) {  // the last chunk
        for (int64_t p = pair_begin_[a]; p < pair_begin_[a + 1]; ++p) h_task(p);
        h_ready[a].store(1, std::memory_order_release);
      }
      return;
    }
    i -= n_gu;
    if (i < n_down) {
      const int64_t a = i / cd, c = i % cd;
      wait_for(h_ready[a], 1);
      down_task(weights, a, c);
      down_done[c].fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    i -= n_down;
    wait_for(down_done[i], A);
    combine_task(routing, out, i);
  });
}

void MoeDecode::map_nodes(const MoeWeights& weights, int n_nodes) {
  if (mapped_nodes_ == n_nodes && mapped_[0] == weights.gate && mapped_[1] == weights.up &&
      mapped_[2] == weights.down) {
    return;
  }
  const int64_t K = desc_.n_embd, N = desc_.n_ff, rows = config_.rows_per_task;
  const int64_t cg = ceil_div(N, rows), cd = ceil_div(K, rows);
  auto node_of = [&](const uint8_t* base, int64_t row0, int64_t n_rows, uint64_t rb) {
    const void* addr = base + row0 * rb;
    const size_t bytes = static_cast<size_t>(n_rows) * rb;
    // A few samples per chunk: one kernel query per chunk and expert, once per weights.
    const int node = options_.node_of ? options_.node_of(addr, bytes) : memory_node(addr, bytes, 4);
    return static_cast<int8_t>(node >= 0 && node < n_nodes ? node : 0);
  };
  const auto* gate = static_cast<const uint8_t*>(weights.gate);
  const auto* down = static_cast<const uint8_t*>(weights.down);
  const uint64_t rb_g = row_bytes(desc_.gate_type, K), rb_d = row_bytes(desc_.down_type, N);
  gu_node_.resize(static_cast<size_t>(desc_.n_expert * cg));
  down_node_.resize(static_cast<size_t>(desc_.n_expert * cd));
  for (int64_t e = 0; e < desc_.n_expert; ++e) {
    for (int64_t c = 0; c < cg; ++c) {  // up rows are placed like gate's (same loader)
      gu_node_[e * cg + c] = node_of(gate, e * N + c * rows, std::min(rows, N - c * rows), rb_g);
    }
    for (int64_t c = 0; c < cd; ++c) {
      down_node_[e * cd + c] = node_of(down, e * K + c * rows, std::min(rows, K - c * rows), rb_d);
    }
  }
  mapped_[0] = weights.gate, mapped_[1] = weights.up, mapped_[2] = weights.down;
  mapped_nodes_ = n_nodes;
}

void MoeDecode::run_by_node(const std::vector<int8_t>& chunk_node, int64_t chunks,
                            ThreadPool& pool,
                            const std::function<void(int64_t, int64_t)>& task) {
  const int n_nodes = pool.n_nodes();
  node_lists_.resize(static_cast<size_t>(n_nodes));
  for (auto& l : node_lists_) l.clear();
  for (int64_t a = 0; a < static_cast<int64_t>(active_experts_.size()); ++a) {
    const int64_t e = active_experts_[a];
    for (int64_t c = 0; c < chunks; ++c) {
      node_lists_[static_cast<size_t>(chunk_node[e * chunks + c])].push_back(a * chunks + c);
    }
  }
  std::vector<int64_t> counts(static_cast<size_t>(n_nodes));
  for (int n = 0; n < n_nodes; ++n) {
    counts[size_t(n)] = static_cast<int64_t>(node_lists_[size_t(n)].size());
    node_tasks_[size_t(n)] += counts[size_t(n)];
  }
  // Cannot fail: one count per pool node.
  (void)pool.parallel_for_nodes(counts, [&](int node, int64_t t) {
    const int64_t i = node_lists_[static_cast<size_t>(node)][static_cast<size_t>(t)];
    task(i / chunks, i % chunks);
  });
}

Status MoeDecode::run(const MoeWeights& weights, const float* x, const MoeRouting& routing,
                      float* out, ThreadPool& pool) {
  KTX_RETURN_IF_ERROR(check_routing(desc_, routing));
  if (routing.n_tokens == 0) return Status::ok();
  if (!weights.gate || !weights.up || !weights.down || !x || !out) {
    return Error("{}: null weights, input or output", desc_.to_string());
  }
  group_by_expert(routing);
  size_buffers();
  node_tasks_.clear();
  if (options_.numa && pool.n_nodes() > 1) {
    map_nodes(weights, pool.n_nodes());
    node_tasks_.assign(static_cast<size_t>(pool.n_nodes()), 0);
    run_phased(weights, x, routing, out, pool, /*by_node=*/true);
  } else if (options_.fused) {
    run_fused(weights, x, routing, out, pool);
  } else {
    run_phased(weights, x, routing, out, pool, /*by_node=*/false);
  }
  return Status::ok();
}

}  // namespace ktx::cpu
