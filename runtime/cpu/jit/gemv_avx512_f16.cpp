// Generated AVX-512 GEMV for 16-bit float weights read in place, BF16 (the high half of an
// f32: vpmovzxwd to dwords, then vpslld by 16) and F16 (IEEE half: vcvtph2ps), against f32
// activations (ActFormat::f32, no quantization). Both conversions to f32 are exact and each
// product is exact inside vfmadd231ps before its one rounding into the accumulator, so the
// kernel computes the reference's Σ w·x and differs from it only in the order of the float
// additions (lanes, accumulators, the horizontal sum).
//
// Decode reads 2 bytes per weight and does one FMA per weight and token, far below what the
// core can issue, so the kernel exists to stream the weights at DRAM speed: 64 elements (two
// cache lines of weights) per iteration with the stream prefetched per Avx512Tuning, tokens in
// groups of up to four sharing each converted vector (GemvAvx512Jit's loop nest), and four
// independent zmm accumulators per token so that even one token keeps four FMAs in flight.
// Rows have no block constraint: every k >= 1 is exact. After k / 64 iterations come the whole
// 16-element vectors left, then one partial vector of p < 16 elements read under the opmask
// k_tail with zeroing (vmovdqu16 / vmovups: masked lanes are neither read nor able to fault), so
// nothing past the weight or activation row is touched. Needs AVX-512 F/BW only; `unroll` is
// ignored.
#include <cstddef>

#include "runtime/cpu/jit/gemv_jit_common.h"

namespace ktx::cpu {
namespace {

using namespace Xbyak;
using namespace Xbyak::util;

class GemvF16Avx512 final : public GemvAvx512Jit {
 public:
  GemvF16Avx512(const GemvDesc& desc, const Avx512Tuning& tuning)
      : GemvAvx512Jit(tuning), bf16_(desc.type == GGMLType::BF16), k_(desc.k) {}

  std::string name() const override {
    return fmt::format("gemv_{}_avx512", bf16_ ? "bf16" : "f16");
  }
  ActFormat act_format() const override { return ActFormat::f32; }

 private:
  static constexpr int kVec = 16;    // floats per zmm
  static constexpr int kUnroll = 4;  // vectors per iteration (accumulators per token)
  static constexpr int kStep = kVec * kUnroll;  // elements per iteration: 128 bytes of weights

  // reg_args, reg_w_row, reg_w, reg_act_tok, reg_out, reg_out_t, reg_toks: see GemvJit;
  // reg_act0, reg_act2, reg_astride and act(t, off): see GemvAvx512Jit.
  const Reg64 reg_iters = r12;    // loop iterations left
  const Reg64 reg_rows = r13;     // rows left
  // acc[4t + u]: token t, vector u of the iteration.
  const Zmm zmm_acc[kMaxGroup * kUnroll] = {zmm16, zmm17, zmm18, zmm19, zmm20, zmm21,
                                            zmm22, zmm23, zmm24, zmm25, zmm26, zmm27,
                                            zmm28, zmm29, zmm30, zmm31};
  const Zmm zmm_w[kUnroll] = {zmm0, zmm1, zmm2, zmm3};  // weights as f32
  const Zmm zmm_a = zmm4;         // the partial vector's activations
  const Ymm ymm_sum = ymm5;       // horizontal sum (below 16: VEX vhaddps)
  const Xmm xmm_sum = xmm5;
  const Xmm xmm_tmp = xmm6;
  const Opmask k_tail = k1;       // the partial vector's p lanes

  // w (f32) = the 16 halves at src.
  void emit_load_w(const Zmm& w, const Address& src) {
    if (bf16_) {
      vpmovzxwd(w, src);
      vpslld(w, w, 16);
    } else {
      vcvtph2ps(w, src);
    }
  }

  // acc[4t + u] += w[w_off..+16] · act_t[a_off..+16] for the group's tokens.
  void emit_vector(int group, int u, int w_off, int a_off) {
    emit_load_w(zmm_w[u], ptr[reg_w + w_off]);
    for (int t = 0; t < group; ++t) {
      vfmadd231ps(zmm_acc[kUnroll * t + u], zmm_w[u], act(t, a_off));
    }
  }

  // The last p (1..15) elements into acc[4t + u]: both rows read under k_tail, zeroing.
  void emit_partial(int group, int u, int w_off, int a_off) {
    const Zmm& w = zmm_w[u];
    const Ymm wh(w.getIdx());
    vmovdqu16(wh | k_tail | T_z, ptr[reg_w + w_off]);
    if (bf16_) {
      vpmovzxwd(w, wh);
      vpslld(w, w, 16);
    } else {
      vcvtph2ps(w, wh);
    }
    for (int t = 0; t < group; ++t) {
      vmovups(zmm_a | k_tail | T_z, act(t, a_off));
      vfmadd231ps(zmm_acc[kUnroll * t + u], w, zmm_a);
    }
  }

  // out[t][r] for the `group` tokens starting at reg_act_tok / reg_out_t.
  void emit_group(int group) override {
    emit_group_pointers(group);
    for (int i = 0; i < kUnroll * group; ++i) vpxord(zmm_acc[i], zmm_acc[i], zmm_acc[i]);
    if (k_ / kStep > 0) {
      Label l_iter;
      mov(reg_iters, k_ / kStep);
      L(l_iter);
      emit_prefetch_w(0);
      emit_prefetch_w(64);
      for (int u = 0; u < kUnroll; ++u) emit_vector(group, u, u * kVec * 2, u * kVec * 4);
      add(reg_w, kStep * 2);
      emit_advance_act(group, kStep * 4);
      dec(reg_iters);
      jnz(l_iter, T_NEAR);
    }
    const int rest = static_cast<int>(k_ % kStep), whole = rest / kVec;
    for (int v = 0; v < whole; ++v) emit_vector(group, v, v * kVec * 2, v * kVec * 4);
    if (rest % kVec) emit_partial(group, whole, whole * kVec * 2, whole * kVec * 4);
    emit_group_stores(group, [&](int t) {
      const Zmm* acc = &zmm_acc[kUnroll * t];
      vaddps(acc[0], acc[0], acc[1]);
      vaddps(acc[2], acc[2], acc[3]);
      vaddps(acc[0], acc[0], acc[2]);
      emit_hsum_zmm(ymm_sum, acc[0], xmm_tmp);
      return xmm_sum;
    });
  }

  // for r in [0, n_rows):                        // weight row stays in L1 across tokens
  //   for each group of G tokens (G = 4 while 4 are left, then 3, 2 or 1 once):
  //     acc[G][4] = 0
  //     for i in [0, k / 64):
  //       prefetch w + distance (two lines)
  //       for u < 4:
  //         w = f32(W[r][64i + 16u ..+16])      (once for the group)
  //         for g < G: acc[g][u] += w · x[g][64i + 16u ..+16]
  //     whole vectors left (k % 64 / 16, emitted straight) into acc[g][0..]
  //     partial vector (k % 16 elements, both rows read under k_tail) into acc[g][next]
  //     out[g][r] = hsum(acc[g][0] + acc[g][1] + acc[g][2] + acc[g][3])
  void generate() override {
    preamble();
    if (k_ % kVec) {
      mov(eax, (1u << (k_ % kVec)) - 1);
      kmovw(k_tail, eax);
    }
    emit_decode_loops(reg_rows);
    postamble();
  }

  bool bf16_;  // BF16 (else F16)
  int64_t k_;
};

}  // namespace

Expected<std::unique_ptr<GemvKernel>> create_gemv_f16_avx512(const GemvDesc& desc,
                                                             const Avx512Tuning& tuning) {
  if ((desc.type != GGMLType::BF16 && desc.type != GGMLType::F16) || desc.k <= 0) {
    return Error("f16_avx512: needs BF16 or F16 rows of at least one element, got {}",
                 desc.to_string());
  }
  KTX_RETURN_IF_ERROR(tuning.validate().with_context(desc.to_string()));
  return create_gemv_jit<GemvF16Avx512>(desc, tuning);
}

}  // namespace ktx::cpu
