// Reference MoE layer (see moe_ref.h). Deliberately simple: one token and one expert at a time,
// each weight row dequantized by the reference dequantizer right before its dot product, sums
// in double so that the oracle's own rounding is far below any tolerance the tests use.
#include "runtime/cpu/moe_ref.h"
#include "runtime/cpu/vec_math.h"

#include <cmath>
#include <vector>

namespace ktx::cpu {
namespace {

// y[r] = row r of `rows` (n_rows rows of `n` elements of `type`) · v.
void matvec(GGMLType type, const uint8_t* rows, int64_t n_rows, int64_t n, const float* v,
            float* y) {
  const uint64_t row_bytes = ggml_row_bytes(type, n).value();
  std::vector<float> w(static_cast<size_t>(n));
  for (int64_t r = 0; r < n_rows; ++r) {
    dequantize_row(type, rows + r * row_bytes, w.data(), n);
    double acc = 0.0;
    for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(w[i]) * v[i];
    y[r] = static_cast<float>(acc);
  }
}

}  // namespace

Status check_routing(const MoeDesc& desc, const MoeRouting& routing) {
  if (routing.n_tokens < 0) return Error("moe routing: n_tokens={} is negative", routing.n_tokens);
  if (routing.n_tokens > 0 && (!routing.expert_ids || !routing.weights)) {
    return Error("moe routing: expert ids or weights missing for {} tokens", routing.n_tokens);
  }
  for (int64_t t = 0; t < routing.n_tokens; ++t) {
    for (int64_t j = 0; j < desc.top_k; ++j) {
      const int32_t e = routing.expert_ids[t * desc.top_k + j];
      const float w = routing.weights[t * desc.top_k + j];
      if (e < 0 || e >= desc.n_expert) {
        return Error("moe routing: token {} slot {}: expert {} out of range [0, {})", t, j, e,
                     desc.n_expert);
      }
      if (!std::isfinite(w)) {
        return Error("moe routing: token {} slot {}: weight {} is not finite", t, j, w);
      }
    }
  }
  return Status::ok();
}

Status moe_reference(const MoeDesc& desc, const MoeWeights& weights, const float* x,
                     const MoeRouting& routing, float* out, const ActRounding& rounding,
                     float* out_abs) {
  KTX_RETURN_IF_ERROR(desc.validate());
  KTX_RETURN_IF_ERROR(check_routing(desc, routing));
  const int64_t K = desc.n_embd, N = desc.n_ff;
  const uint64_t gate_bytes = ggml_row_bytes(desc.gate_type, K).value() * N;  // per expert
  const uint64_t up_bytes = ggml_row_bytes(desc.up_type, K).value() * N;
  const uint64_t down_bytes = ggml_row_bytes(desc.down_type, N).value() * K;
  std::vector<float> xg(K), xu(K), g(N), u(N), h(N), w_row(N);
  std::vector<double> acc(K), acc_abs(K);
  const uint64_t down_row_bytes = ggml_row_bytes(desc.down_type, N).value();
  for (int64_t t = 0; t < routing.n_tokens; ++t) {
    std::fill(acc.begin(), acc.end(), 0.0);
    std::fill(acc_abs.begin(), acc_abs.end(), 0.0);
    for (int64_t j = 0; j < desc.top_k; ++j) {
      const int64_t e = routing.expert_ids[t * desc.top_k + j];
      const float w = routing.weights[t * desc.top_k + j];
      xg.assign(x + t * K, x + (t + 1) * K);
      xu = xg;
      round_act_row(rounding.gate_in, xg.data(), K);
      round_act_row(rounding.up_in, xu.data(), K);
      matvec(desc.gate_type, static_cast<const uint8_t*>(weights.gate) + e * gate_bytes, N, K,
             xg.data(), g.data());  // [n_ff]
      matvec(desc.up_type, static_cast<const uint8_t*>(weights.up) + e * up_bytes, N, K,
             xu.data(), u.data());  // [n_ff]
      silu_mul(g.data(), u.data(), h.data(), N);
      round_act_row(rounding.down_in, h.data(), N);
      const auto* down = static_cast<const uint8_t*>(weights.down) + e * down_bytes;
      for (int64_t k = 0; k < K; ++k) {  // down row by row, keeping |products| for the bound
        dequantize_row(desc.down_type, down + k * down_row_bytes, w_row.data(), N);
        double s = 0.0, s_abs = 0.0;
        for (int64_t n = 0; n < N; ++n) {
          const double p = static_cast<double>(w_row[n]) * h[n];
          s += p;
          s_abs += std::fabs(p);
        }
        acc[k] += static_cast<double>(w) * s;
        acc_abs[k] += std::fabs(static_cast<double>(w)) * s_abs;
      }
    }
    for (int64_t k = 0; k < K; ++k) {
      out[t * K + k] = static_cast<float>(acc[k]);
      if (out_abs) out_abs[t * K + k] = static_cast<float>(acc_abs[k]);
    }
  }
  return Status::ok();
}

}  // namespace ktx::cpu
