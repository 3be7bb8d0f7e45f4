// Fused routed-expert layer for prefill (many tokens per expert, compute-bound): the GEMM twin
// of moe_reference(). Per call:
//   1. routing slots are grouped by expert; each expert's tokens are padded to whole groups
//      of 16 (the micro-kernels' token tile), experts without tokens cost nothing;
//   2. every token's input is quantized once to int16-grade values held as two int8 planes
//      (act_quant.h) and laid out expert by expert in the kernel's activation tiles;
//   3. gate and up GEMMs over tasks (active expert x chunk of 16-row panels);
//   4. h = SiLU(gate)·up per (token, expert), quantized the same way;
//   5. down GEMMs likewise; out[t] = Σ_j w_tj · down(h_tj) in slot order (deterministic).
// Two GEMMs, chosen per matrix by the weight type (repack_int8.h, prefill_*_in_place):
//   * K-quants (Q4_K, Q5_K) are read in place from the GGUF by the super-block kernel
//     (jit/gemm_kq_kernel.h): each task expands a panel's super-block into byte planes in L1
//     and runs it against all the expert's token groups; activations in q16_k rounding.
//   * 32-element block types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) use the int8 repack made at load
//     (repack_int8.h) and the per-block kernel (jit/gemm_amx_kernel.h); q16_0 rounding.
// A down type with neither (Q6_K, which Q4_K_M files use for most experts' down) runs step 5
// through the decode GEMV on the GGUF blocks (h quantized in that kernel's format), so gate
// and up, two thirds of the work, keep the GEMM.
// The micro-kernels are generated AMX code where the CPU, the OS and the descriptor's tier
// allow, else their plain C++ twins (identical bits, slow); avx512 and avx2 descriptors take
// the int16 K-quant GEMM's vector bodies, and config act=i8 the int8-activation form (q8_k32
// rounding of x and h; AVX-512 VNNI body, or its twin on a reference descriptor). Activation
// rounding is the only approximation.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/cpu/jit/gemm_amx_kernel.h"
#include "runtime/cpu/jit/gemm_kq_kernel.h"
#include "runtime/cpu/jit/gemv.h"
#include "common/kernels/kernel_desc.h"
#include "runtime/cpu/moe_ref.h"
#include "runtime/cpu/repack_int8.h"
#include "runtime/cpu/thread_pool.h"

namespace ktx::cpu {

// Wall time of each phase of the last MoePrefill::run, in milliseconds.
struct PrefillPhaseMs {
  double quantize = 0, gate = 0, up = 0, activate = 0, down = 0, combine = 0;
};

class MoePrefill {
 public:
  // Picks the micro-kernels: AMX when desc.isa is amx and `cpu` has it (and the OS grants tile
  // state), the C++ twins otherwise; for a down type with neither GEMM, the decode GEMV
  // make_gemv() picks at desc.isa. Errors: invalid descriptor/config, a gate or up type that
  // has neither GEMM (names it), kernel generation.
  static Expected<std::unique_ptr<MoePrefill>> create(const MoeDesc& desc,
                                                      const MoeConfig& config,
                                                      const CpuIsa& cpu);

  // out: [n_tokens][n_embd], overwritten. `weights` must be repacked for this descriptor.
  // One call at a time per instance (scratch buffers are members).
  Status run(const RepackedMoe& weights, const float* x, const MoeRouting& routing, float* out,
             ThreadPool& pool);

  // The activation rounding applied (for moe_reference): q16_k where the K-quant kernel reads
  // the input (q8_k32 for its int8-activation form, config act=i8), q16_0 where the int8 one does, the GEMV's format where it runs down.
  ActRounding act_rounding() const {
    const ActFormat in = kq_gate_ ? kq_fmt_x_ : ActFormat::q16_0;
    return {in, in, kq_down_     ? kq_fmt_h_
                    : down_gemv_ ? down_gemv_->act_format()
                                 : ActFormat::q16_0};
  }
  // The gate kernel's name, then " + down <name>" when down runs another kernel: e.g.
  // "gemm_q4_k_amx", "gemm_q4_k_amx + down gemv_q6_k_avx512".
  std::string kernel_name() const;
  // (token, expert) rows the last call multiplied, before and after padding to groups of 16.
  int64_t last_pairs() const { return n_pairs_; }
  int64_t last_padded_pairs() const { return n_padded_; }
  const PrefillPhaseMs& last_phase_ms() const { return phase_ms_; }

 private:
  MoePrefill(const MoeDesc& desc, const MoeConfig& config) : desc_(desc), config_(config) {}
  Status check_weights(const RepackedMoe& weights) const;
  void group_by_expert(const MoeRouting& routing);
  void quantize_inputs(const float* x, int64_t n_tokens, ThreadPool& pool);
  // Rows of int16-grade activations as their two int8 planes (v = 255·hi + lo).
  struct Int8Planes {
    std::vector<int8_t> hi, lo;
    void resize(size_t n) { hi.resize(n), lo.resize(n); }
  };

  void gemm(const std::vector<RepackedMatrix>& w, const Int8Planes& act, const float* scale,
            const float* sum, int64_t k, float* out, int64_t out_stride, ThreadPool& pool);
  // K-quant panels of `rows` rows x k, read in place, against packed activation tiles.
  struct KqActs {
    std::vector<uint8_t> rows;    // q16_k rows (tokens, or padded rows for h)
    std::vector<int8_t> tiles;    // [group][super-block] kKqActBytes
    std::vector<float> floats;    // [group][super-block] kKqActFloats
  };
  void quantize_inputs_kq(const float* x, int64_t n_tokens, ThreadPool& pool);
  void pack_group_kq(int64_t grp, int64_t k, const uint8_t* rows, int64_t row_bytes,
                     bool by_token, KqActLayout layout, KqActs& acts) const;
  void gemm_kq(const GemmKqKernel& kernel, const std::vector<const uint8_t*>& w, int64_t rows,
               int64_t k, const KqActs& acts, float* out, int64_t out_stride, ThreadPool& pool);
  void activate(ThreadPool& pool);
  void down_by_gemv(const RepackedMoe& weights, ThreadPool& pool);
  void combine(const MoeRouting& routing, float* out, ThreadPool& pool);

  MoeDesc desc_;
  MoeConfig config_;
  std::unique_ptr<GemmInt8Kernel> plain_, biased_;  // int8 GEMM without / with bias (if used)
  std::unique_ptr<GemvKernel> down_gemv_;            // down types without either GEMM
  std::unique_ptr<GemmKqKernel> kq_gate_, kq_up_, kq_down_;  // K-quant matrices (in place)
  std::vector<int32_t> active_;       // experts with tokens, ascending
  std::vector<int64_t> pad_begin_;    // [active + 1]: first padded row of each expert
  std::vector<int64_t> slot_row_;     // [slots]: padded row of each routing slot
  std::vector<int64_t> row_token_;    // [padded rows]: token of each row, -1 for padding
  std::vector<int64_t> real_rows_;    // [active]: the expert's real (leading) rows
  int64_t n_pairs_ = 0, n_padded_ = 0;
  PrefillPhaseMs phase_ms_;
  Int8Planes xq_, act_, hq_;                 // rows: tokens, gathered inputs, h
  std::vector<float> xs_, xsum_;             // [tokens][K/32]
  std::vector<float> as_, asum_, hs_, hsum_; // [group of 16][block][16]
  std::vector<float> g_, u_, d_;             // [padded rows][N or K padded]
  std::vector<uint8_t> act_down_;            // GEMV down: [padded rows] h in its format
  KqActs kq_x_, kq_h_;                       // K-quant kernel inputs: x (gate, up), h (down)
  ActFormat kq_fmt_x_ = ActFormat::q16_k;    // their rounding (x, h): q8_k32 for the int8 form
  ActFormat kq_fmt_h_ = ActFormat::q16_k;
};

}  // namespace ktx::cpu
