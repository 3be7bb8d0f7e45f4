// The prefill GEMM micro-kernel: one call computes 16 tokens x (16 · n_panels) weight rows of
// one expert over a range of k_blocks 32-element blocks, on int16-grade activations (two int8
// planes, v = 255·hi + lo, act_quant.h q16_0) and int8 weights repacked by repack_int8.h:
//   out[m][n] (+)= Σ_b  a_scale[b][m] * (w_scale[n][b] * C_b[m][n])  +  a_sum[b][m] * w_bias[n][b]
// where C_b = 255·H_b + L_b, H_b and L_b the int32 dot products of block b's weights with the
// hi and the lo plane (two AMX tile ops sharing one B tile), and
// a_sum[b][m] = a_scale[b][m] * Σ v (the rounded activations' block sum, for the bias term).
// C_b is formed in float as fma(float(H_b), 255, float(L_b)): H_b and L_b are exact floats
// (|·| < 2^24), so this is the single rounding of the exact integer, the same bits as
// float(255·H_b + L_b) in int32 (|C_b| <= 32·128·32512 < 2^31), which the twin computes.
// Each block is scaled into float as soon as its int32 tiles are done, because the weight scale
// changes every 32 elements (Q4_K sub-blocks) and only this keeps the result exact.
// Why two planes: int8 activations alone moved the test models' logits past the end-to-end
// bound (mean KL 5e-4); see act_quant.h. They double the tile work and the tiles the epilogue
// converts per block (about half the int8 kernel's speed, docs/kernels.md).
// `accumulate` continues a sum over an earlier block range (the driver splits K into chunks
// that stay in L1/L2): the float accumulators start from `out` instead of zero. Storing and
// reloading a float is exact, so a split K gives the same bits as one call over all of K.
//
// Two implementations with one contract and the same float operation order (bit-identical
// outputs): the generated AMX kernel (gemm_amx_int8.cpp) and its plain C++ twin
// (gemm_amx_ref.cpp), which runs on every CPU.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/hw/hw_profile.h"
#include "common/util/status.h"

namespace ktx::cpu {

inline constexpr int64_t kGemmTileM = 16;  // tokens per call (one AMX A tile)
inline constexpr int64_t kGemmTileN = 16;  // weight rows per panel (one AMX B tile)

// Arguments of one call; generated code reads them by offsetof (field order is ABI).
struct GemmTileArgs {
  const int8_t* a = nullptr;       // token 0's hi-plane int8 row at the first block
  const int8_t* a_lo = nullptr;    // token 0's lo-plane row at the first block (same stride)
  int64_t a_stride = 0;            // bytes between token rows (of either plane)
  const float* a_scale = nullptr;  // [k_blocks][16 tokens]
  const float* a_sum = nullptr;    // [k_blocks][16 tokens]
  const int8_t* b = nullptr;       // panel 0 at the first block: [k_blocks][512] B tiles
  int64_t b_panel_stride = 0;      // bytes from one panel's tiles to the next's
  const float* w_scale = nullptr;  // panel 0 at the first block: [k_blocks][16]
  const float* w_bias = nullptr;   // panel 0 at the first block: [k_blocks][16]
  int64_t w_panel_stride = 0;      // bytes from one panel's scales (and biases) to the next's
  float* out = nullptr;            // (token 0, row 0); 16 x 16·n_panels floats written
  int64_t out_stride = 0;          // floats between tokens' output rows
  int64_t k_blocks = 0;            // >= 1
  int64_t n_panels = 1;            // >= 1; panel p writes out columns 16p .. 16p+15
  int64_t accumulate = 0;          // 0: sums start at zero; 1: they start from out
};

class GemmInt8Kernel {
 public:
  virtual ~GemmInt8Kernel() = default;
  virtual std::string name() const = 0;
  virtual void run(const GemmTileArgs& args) const = 0;
};

// Plain C++ twin: every CPU. `has_bias` false skips the bias term (all biases zero).
std::unique_ptr<GemmInt8Kernel> create_gemm_int8_ref(bool has_bias);
// Generated AMX kernel. Errors: the CPU or OS lacks AMX (names what is missing), generation.
Expected<std::unique_ptr<GemmInt8Kernel>> create_gemm_int8_amx(bool has_bias, const CpuIsa& cpu);

}  // namespace ktx::cpu
