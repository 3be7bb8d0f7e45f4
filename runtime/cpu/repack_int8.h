// Load-time repacking of expert weights for the prefill GEMM (runtime/cpu/prefill_moe.h): each
// expert matrix (rows x k, GGUF blocks) becomes int8 values in the AMX B-tile layout plus one
// float scale and one float bias per (row, 32-element block), so that
//     w[r][k] == scale[r][k/32] * q[r][k] + bias[r][k/32]
// reproduces dequantize_row() exactly (checked element by element while repacking). Only types
// whose 32-element blocks are affine in small integers repack exactly: Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1, Q4_K, Q5_K. Others (Q6_K and Q2_K/Q3_K have 16-element scales, float types have no
// integer grid) are refused by name; the decode path still runs them.
//
// Layout (one allocation per matrix, 64-byte aligned):
//   q:     [panel p][block b][kq 0..7][row n 0..15][4]   one 512-byte B tile per (p, b)
//   scale: [panel p][block b][16]    bias: same          (zero for padded rows)
// Rows are padded to a multiple of 32 (two panels per kernel call) with zero weights.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/quant/quant.h"
#include "common/util/status.h"
#include "common/kernels/kernel_desc.h"
#include "runtime/cpu/moe_ref.h"
#include "runtime/cpu/thread_pool.h"

namespace ktx::cpu {

inline constexpr int64_t kRepackBlock = 32;       // K elements per scale
inline constexpr int64_t kRepackPanel = 16;       // rows per B tile
inline constexpr int64_t kRepackRowAlign = 32;    // rows padded to two panels
inline constexpr int64_t kRepackTileBytes = 512;  // one (panel, block) B tile

struct RepackedMatrix {
  int64_t rows = 0;       // logical rows
  int64_t k = 0;          // elements per row (multiple of 32)
  int64_t panels = 0;     // padded rows / 16 (even)
  int64_t blocks = 0;     // k / 32
  bool has_bias = false;  // false when every bias is zero (symmetric types)
  const int8_t* q = nullptr;
  const float* scale = nullptr;
  const float* bias = nullptr;
  std::shared_ptr<uint8_t> storage;  // owns q/scale/bias; copies alias it

  const int8_t* panel_q(int64_t p) const { return q + p * blocks * kRepackTileBytes; }
  const float* panel_scale(int64_t p) const { return scale + p * blocks * kRepackPanel; }
  const float* panel_bias(int64_t p) const { return bias + p * blocks * kRepackPanel; }
  // The weight the layout represents (for tests): scale * q + bias.
  float at(int64_t r, int64_t kk) const;
};

// Whether type repacks exactly into int8 with per-32 scale and bias.
bool repack_int8_supported(GGMLType type);

// Repacks `rows` GGUF rows of `k` elements. Errors name `what`, the type and, when the check
// fails, the row and element.
Expected<RepackedMatrix> repack_int8(GGMLType type, const void* data, int64_t rows, int64_t k,
                                     const std::string& what);

// Every expert of a layer, indexed by expert id. Copies of a matrix share storage, so a
// benchmark may point several expert ids at one repacked expert. A matrix that prefill reads in
// place (prefill_gate_up_in_place / prefill_down_in_place) has no repacked entries; its `*_raw`
// entries point at each expert's first GGUF row instead (and may alias as well).
struct RepackedMoe {
  MoeDesc desc;
  std::vector<RepackedMatrix> gate, up, down;        // [n_expert] or empty
  std::vector<const uint8_t*> gate_raw, up_raw, down_raw;  // [n_expert] or empty
};

// Which matrices prefill reads in place rather than repacked (the rule repack_moe and
// MoePrefill share): gate and up when both have the K-quant kernel (Q4_K, Q5_K); down when it
// has that kernel, or no exact int8 repack (Q6_K in Q4_K_M files: the decode GEMV runs it).
bool prefill_gate_up_in_place(const MoeDesc& desc);
bool prefill_down_in_place(const MoeDesc& desc);

// Repacks the layer's stacked tensors, experts in parallel on `pool`, except the matrices read
// in place (above). Errors name a gate or up type that has neither path.
Expected<RepackedMoe> repack_moe(const MoeDesc& desc, const MoeWeights& weights,
                                 ThreadPool& pool);

}  // namespace ktx::cpu
