// The plain reference for one routed-expert (MoE) layer: the oracle every fast CPU path is
// tested against. For each token t and each selected expert e with routing weight w_e:
//   g = gate_e · x_t,  u = up_e · x_t            // [n_ff]
//   h = SiLU(g) * u                              // [n_ff]
//   out_t += w_e * (down_e · h)                  // [n_embd]
// in float32 on weights dequantized by common/quant's dequantize_row, reading the GGUF expert
// tensors (any supported type) in place. Optionally it applies the same activation rounding a
// fast path applies (ActRounding), so that tests can separate kernel bugs from the one
// approximation fast paths are allowed.
#pragma once

#include <cmath>
#include <cstdint>

#include "runtime/cpu/act_quant.h"
#include "common/kernels/kernel_desc.h"

namespace ktx::cpu {

// Raw GGUF data of the three stacked expert tensors (shapes in MoeDesc): expert e's row r
// starts at e * rows * row_bytes + r * row_bytes. No alignment is required.
struct MoeWeights {
  const void* gate = nullptr;  // [n_embd, n_ff, n_expert]
  const void* up = nullptr;    // [n_embd, n_ff, n_expert]
  const void* down = nullptr;  // [n_ff, n_embd, n_expert]
};

// The router's choice for a batch of tokens.
struct MoeRouting {
  int64_t n_tokens = 0;
  const int32_t* expert_ids = nullptr;   // [n_tokens][top_k], each in [0, n_expert)
  const float* weights = nullptr;        // [n_tokens][top_k], routing weight of each choice
};

// The activation rounding a fast path applies before each weight product (f32 = none).
struct ActRounding {
  ActFormat gate_in = ActFormat::f32;   // x as the gate kernel reads it
  ActFormat up_in = ActFormat::f32;     // x as the up kernel reads it
  ActFormat down_in = ActFormat::f32;   // h as the down kernel reads it
};

// Every expert id in range and every weight finite; errors name the token and slot.
Status check_routing(const MoeDesc& desc, const MoeRouting& routing);

// out[t][k] (n_tokens x n_embd, overwritten). When out_abs is not null it receives the scale
// of each output for error bounds: sum_e |w_e| * sum_n |down_e[k][n] * h_e[n]|.
Status moe_reference(const MoeDesc& desc, const MoeWeights& weights, const float* x,
                     const MoeRouting& routing, float* out, const ActRounding& rounding = {},
                     float* out_abs = nullptr);

inline float silu(float v) { return v / (1.0f + std::exp(-v)); }

}  // namespace ktx::cpu
