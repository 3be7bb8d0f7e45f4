// MoeDecode: see moe_decode.h. Tokens are grouped by expert into (token, expert) "pairs" laid
// out expert by expert, so each expert's inputs and outputs are contiguous rows and one GEMV
// call covers all tokens routed to it (each weight row is read from memory once per call).
#include "runtime/cpu/moe_decode.h"

#include <algorithm>
#include <cstring>

namespace ktx::cpu {
namespace {

uint64_t row_bytes(GGMLType type, int64_t n) { return ggml_row_bytes(type, n).value(); }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

Expected<std::unique_ptr<MoeDecode>> MoeDecode::create(const MoeDesc& desc,
                                                       const MoeConfig& config,
                                                       const CpuIsa& cpu) {
  KTX_RETURN_IF_ERROR(desc.validate());
  KTX_RETURN_IF_ERROR(config.validate().with_context(desc.to_string()));
  std::unique_ptr<MoeDecode> moe(new MoeDecode(desc, config));
  const struct { GGMLType type; int64_t k; std::unique_ptr<GemvKernel>* dst; } kernels[] = {
      {desc.gate_type, desc.n_embd, &moe->gate_},
      {desc.up_type, desc.n_embd, &moe->up_},
      {desc.down_type, desc.n_ff, &moe->down_}};
  for (const auto& k : kernels) {
    GemvDesc gd{k.type, k.k, config.unroll, desc.isa};
    auto kernel = make_gemv(gd, cpu);
    if (!kernel) return kernel.status().with_context(desc.to_string());
    *k.dst = std::move(kernel).value();
  }
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

void MoeDecode::quantize_inputs(const float* x, int64_t n_tokens, ThreadPool& pool) {
  const int64_t K = desc_.n_embd;
  const ActFormat fg = gate_->act_format(), fu = up_->act_format();
  const size_t bg = act_row_bytes(fg, K), bu = act_row_bytes(fu, K);
  const bool shared = fg == fu;
  xq_gate_.resize(n_tokens * bg);
  if (!shared) xq_up_.resize(n_tokens * bu);
  pool.parallel_for(n_tokens, [&](int64_t t) {
    quantize_act_row(fg, x + t * K, xq_gate_.data() + t * bg, K);
    if (!shared) quantize_act_row(fu, x + t * K, xq_up_.data() + t * bu, K);
  });
  const int64_t n_pairs = static_cast<int64_t>(pair_token_.size());
  act_gate_.resize(n_pairs * bg);
  act_up_.resize(n_pairs * bu);
  const std::vector<uint8_t>& src_up = shared ? xq_gate_ : xq_up_;
  for (int64_t p = 0; p < n_pairs; ++p) {  // gather: a few KB per pair
    std::memcpy(act_gate_.data() + p * bg, xq_gate_.data() + pair_token_[p] * bg, bg);
    std::memcpy(act_up_.data() + p * bu, src_up.data() + pair_token_[p] * bu, bu);
  }
}

void MoeDecode::run_gate_up(const MoeWeights& weights, ThreadPool& pool) {
  const int64_t K = desc_.n_embd, N = desc_.n_ff, rows = config_.rows_per_task;
  const int64_t chunks = ceil_div(N, rows);
  const uint64_t rb_gate = row_bytes(desc_.gate_type, K), rb_up = row_bytes(desc_.up_type, K);
  const size_t ab_gate = act_row_bytes(gate_->act_format(), K);
  const size_t ab_up = act_row_bytes(up_->act_format(), K);
  const int64_t n_active = static_cast<int64_t>(active_experts_.size());
  pool.parallel_for(n_active * chunks, [&](int64_t task) {
    const int64_t a = task / chunks, r0 = (task % chunks) * rows;
    const int64_t e = active_experts_[a], p0 = pair_begin_[a];
    GemvArgs args;
    args.n_rows = std::min(rows, N - r0);
    args.n_tokens = pair_begin_[a + 1] - p0;
    args.out_stride = N;
    args.w_stride = static_cast<int64_t>(rb_gate);
    args.w = static_cast<const uint8_t*>(weights.gate) + (e * N + r0) * rb_gate;
    args.act = act_gate_.data() + p0 * ab_gate;
    args.act_stride = static_cast<int64_t>(ab_gate);
    args.out = g_.data() + p0 * N + r0;  // [pairs][n_ff]
    gate_->run(args);
    args.w_stride = static_cast<int64_t>(rb_up);
    args.w = static_cast<const uint8_t*>(weights.up) + (e * N + r0) * rb_up;
    args.act = act_up_.data() + p0 * ab_up;
    args.act_stride = static_cast<int64_t>(ab_up);
    args.out = u_.data() + p0 * N + r0;  // [pairs][n_ff]
    up_->run(args);
  });
}

void MoeDecode::run_act_down(const MoeWeights& weights, ThreadPool& pool) {
  const int64_t K = desc_.n_embd, N = desc_.n_ff, rows = config_.rows_per_task;
  const ActFormat fd = down_->act_format();
  const size_t ab = act_row_bytes(fd, N);
  const int64_t n_pairs = static_cast<int64_t>(pair_token_.size());
  act_down_.resize(n_pairs * ab);
  pool.parallel_for(n_pairs, [&](int64_t p) {
    float* h = g_.data() + p * N;  // h = SiLU(g) * u, in place of g
    const float* u = u_.data() + p * N;
    for (int64_t n = 0; n < N; ++n) h[n] = silu(h[n]) * u[n];
    quantize_act_row(fd, h, act_down_.data() + p * ab, N);
  });
  const int64_t chunks = ceil_div(K, rows);
  const uint64_t rb = row_bytes(desc_.down_type, N);
  const int64_t n_active = static_cast<int64_t>(active_experts_.size());
  pool.parallel_for(n_active * chunks, [&](int64_t task) {
    const int64_t a = task / chunks, r0 = (task % chunks) * rows;
    const int64_t e = active_experts_[a], p0 = pair_begin_[a];
    GemvArgs args;
    args.w = static_cast<const uint8_t*>(weights.down) + (e * K + r0) * rb;
    args.w_stride = static_cast<int64_t>(rb);
    args.act = act_down_.data() + p0 * ab;
    args.act_stride = static_cast<int64_t>(ab);
    args.out = d_.data() + p0 * K + r0;  // [pairs][n_embd]
    args.out_stride = K;
    args.n_rows = std::min(rows, K - r0);
    args.n_tokens = pair_begin_[a + 1] - p0;
    down_->run(args);
  });
}

void MoeDecode::combine(const MoeRouting& routing, float* out, ThreadPool& pool) {
  const int64_t K = desc_.n_embd, top_k = desc_.top_k;
  pool.parallel_for(routing.n_tokens, [&](int64_t t) {
    float* o = out + t * K;  // [n_embd]
    std::fill(o, o + K, 0.0f);
    for (int64_t j = 0; j < top_k; ++j) {
      const float w = routing.weights[t * top_k + j];
      const float* d = d_.data() + slot_pair_[t * top_k + j] * K;
      for (int64_t k = 0; k < K; ++k) o[k] += w * d[k];
    }
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
  const int64_t n_pairs = static_cast<int64_t>(pair_token_.size());
  g_.resize(n_pairs * desc_.n_ff);
  u_.resize(n_pairs * desc_.n_ff);
  d_.resize(n_pairs * desc_.n_embd);
  quantize_inputs(x, routing.n_tokens, pool);
  run_gate_up(weights, pool);
  run_act_down(weights, pool);
  combine(routing, out, pool);
  return Status::ok();
}

}  // namespace ktx::cpu
