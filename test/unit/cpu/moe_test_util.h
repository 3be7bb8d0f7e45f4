// Helpers for the CPU expert kernel tests: random expert tensors quantized by the reference
// quantizer (so the dequantized weights are exactly what every path must multiply by), random
// activations, and routing patterns that leave some experts without tokens.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/quant/quant.h"
#include "common/kernels/kernel_desc.h"
#include "runtime/cpu/moe_ref.h"

namespace ktx::cpu::test {

// A layer descriptor: K = n_embd, N = n_ff.
inline MoeDesc moe_desc(int64_t k, int64_t n, int64_t experts, int64_t top_k, GGMLType gate,
                        GGMLType up, GGMLType down, int64_t max_tokens, IsaTier isa) {
  MoeDesc d;
  d.n_embd = k, d.n_ff = n, d.n_expert = experts, d.top_k = top_k;
  d.gate_type = gate, d.up_type = up, d.down_type = down;
  d.max_tokens = max_tokens, d.isa = isa;
  return d;
}

// `rows` rows of `n` elements of `type`, values ~ N(0, 1/sqrt(n)) before quantization.
inline std::vector<uint8_t> random_rows(GGMLType type, int64_t rows, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f / std::sqrt(static_cast<float>(n)));
  const uint64_t rb = ggml_row_bytes(type, n).value();
  std::vector<uint8_t> out(rows * rb);
  std::vector<float> row(n);
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : row) v = dist(rng);
    quantize_row(type, row.data(), out.data() + r * rb, n);
  }
  return out;
}

inline std::vector<float> random_floats(int64_t n, float stddev, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// The stacked gate/up/down tensors of a layer.
struct ExpertTensors {
  std::vector<uint8_t> gate, up, down;
  MoeWeights view() const { return {gate.data(), up.data(), down.data()}; }
};

inline ExpertTensors random_experts(const MoeDesc& d, uint32_t seed) {
  return {random_rows(d.gate_type, d.n_expert * d.n_ff, d.n_embd, seed),
          random_rows(d.up_type, d.n_expert * d.n_ff, d.n_embd, seed + 1),
          random_rows(d.down_type, d.n_expert * d.n_embd, d.n_ff, seed + 2)};
}

// How tokens pick experts.
enum class RoutePattern {
  spread,     // each token: top_k distinct random experts
  clustered,  // every token picks from the same top_k + 1 experts (many tokens per expert)
  repeated,   // one expert taken twice by the same token (a router bug the math still defines)
};

struct Routing {
  std::vector<int32_t> ids;
  std::vector<float> weights;
  MoeRouting view(int64_t n_tokens) const { return {n_tokens, ids.data(), weights.data()}; }
};

inline Routing make_routing(const MoeDesc& d, int64_t n_tokens, RoutePattern pattern,
                            uint32_t seed) {
  std::mt19937 rng(seed);
  Routing r;
  std::uniform_real_distribution<float> wdist(0.05f, 1.0f);
  const int64_t pool = pattern == RoutePattern::clustered
                           ? std::min(d.n_expert, d.top_k + 1) : d.n_expert;
  for (int64_t t = 0; t < n_tokens; ++t) {
    std::vector<int32_t> cand(pool);
    for (int64_t i = 0; i < pool; ++i) cand[i] = static_cast<int32_t>(i);
    std::shuffle(cand.begin(), cand.end(), rng);
    for (int64_t j = 0; j < d.top_k; ++j) {
      r.ids.push_back(cand[j]);
      r.weights.push_back(wdist(rng));
    }
    if (pattern == RoutePattern::repeated && d.top_k > 1) r.ids[t * d.top_k + 1] = r.ids[t * d.top_k];
  }
  return r;
}

}  // namespace ktx::cpu::test
