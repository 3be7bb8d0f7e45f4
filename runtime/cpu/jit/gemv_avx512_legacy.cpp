// Generated AVX-512 VNNI GEMV for the 32-element legacy blocks read in place, Q8_0 (34 bytes:
// fp16 scale, 32 int8) and Q4_0 (18 bytes: fp16 scale, 16 bytes of nibbles, value = nibble - 8;
// low nibbles are elements 0..15, high nibbles 16..31), against q16_0 activations
// (ActBlockQ16_0: float scale, 32 int8 hi, 32 int8 lo; v = 255·hi + lo, |v| <= 32512). Q4_0
// nibbles are widened to int8 first.
//
// The int8 multiplies take unsigned by signed bytes, and these weights are signed. The sign
// moves to the activation: |w| (vpabsb; -128 becomes the unsigned 128, still exact) times
// sign(w)·a (each plane negated under the mask of negative w, vpmovb2m + masked vpsubb; the
// planes never hold -128, so the negation cannot wrap). Per block and token:
//   hi: vpmaddubsw pairs, |2·128·127| = 32512 <= 32767, so the saturating add never saturates;
//       vpmaddwd against 255 words: 255·(pair + pair) per dword, <= 16581120;
//   lo: vpdpbusd adds the 4 products of each dword, <= 65024.
// So each dword is Σ |w|·sign(w)·v over its 4 elements, |dword| <= 16646144 < 2^24: exact in
// int32 (and even in its float conversion). The block's dot is scaled by d_w·d_a in float. One
// block is 32 elements, so the kernel runs on ymm registers (AVX-512 VL): the per-block float
// scaling would waste a zmm's upper half. Tokens go in groups of up to four sharing each
// weight block's decode; each token keeps two accumulators (even and odd blocks) so
// consecutive FMAs do not wait on each other. `unroll` is ignored (fixed at 2).
#include <cstddef>

#include "runtime/cpu/jit/gemv_jit_common.h"

namespace ktx::cpu {
namespace {

using namespace Xbyak;
using namespace Xbyak::util;

class GemvLegacyAvx512 final : public GemvAvx512Jit {
 public:
  GemvLegacyAvx512(const GemvDesc& desc, const Avx512Tuning& tuning)
      : GemvAvx512Jit(tuning), q4_(desc.type == GGMLType::Q4_0), w_block_(q4_ ? 18 : 34),
        n_blocks_(desc.k / 32) {}

  std::string name() const override {
    return fmt::format("gemv_{}_avx512", q4_ ? "q4_0" : "q8_0");
  }
  ActFormat act_format() const override { return ActFormat::q16_0; }

 private:
  static constexpr int kABlock = static_cast<int>(sizeof(ActBlockQ16_0));
  static constexpr int kActHi = static_cast<int>(offsetof(ActBlockQ16_0, hi));
  static constexpr int kActLo = static_cast<int>(offsetof(ActBlockQ16_0, lo));

  // reg_args, reg_w_row, reg_w, reg_act_tok, reg_out, reg_out_t, reg_toks: see GemvJit;
  // reg_act0, reg_act2, reg_astride and act(t, off): see GemvAvx512Jit.
  const Reg64 reg_blocks = r12;   // block-pair iterations left
  const Reg64 reg_rows = r13;     // rows left
  // acc[2t + u]: token t, block parity u. Below 16: the horizontal sums use VEX vhaddps.
  const Ymm ymm_acc[2 * kMaxGroup] = {ymm0, ymm1, ymm2, ymm3, ymm4, ymm5, ymm6, ymm7};
  const Ymm ymm_w = ymm8;         // weights as int8 (Q4_0: widened), then reused for sums
  const Xmm xmm_w = xmm8;
  const Ymm ymm_hi = ymm9;        // Q4_0 high nibbles; horizontal-sum temporary
  const Xmm xmm_hi = xmm9;
  const Ymm ymm_mask = ymm10;     // Q4_0: 0x0f bytes
  const Ymm ymm_eight = ymm11;    // Q4_0: 8 in every byte
  const Ymm ymm_absw = ymm16;     // |w| (unsigned)
  const Ymm ymm_a[kMaxGroup] = {ymm17, ymm18, ymm19, ymm20};    // sign(w)·hi, then pairs
  const Ymm ymm_alo[kMaxGroup] = {ymm27, ymm28, ymm29, ymm30};  // sign(w)·lo
  const Ymm ymm_dot[kMaxGroup] = {ymm21, ymm22, ymm23, ymm24};  // int32 dot, then float
  const Ymm ymm_dw = ymm25;       // d_w, broadcast
  const Xmm xmm_dw = xmm25;
  const Ymm ymm_zero = ymm26;
  const Ymm ymm_c255 = ymm31;     // 255 in every word
  const Opmask k_neg = k1;        // bytes where w < 0

  // The weight block at w_off as 32 int8 values in ymm_w.
  void emit_load_w(int w_off) {
    if (!q4_) {
      vmovdqu(ymm_w, ptr[reg_w + w_off + 2]);
      return;
    }
    vmovdqu(xmm_w, ptr[reg_w + w_off + 2]);
    vpsrlw(xmm_hi, xmm_w, 4);
    vinserti128(ymm_w, ymm_w, xmm_hi, 1);
    vpand(ymm_w, ymm_w, ymm_mask);
    vpsubb(ymm_w, ymm_w, ymm_eight);
  }

  // ymm_a[t], ymm_alo[t] = sign(w)·hi, sign(w)·lo of token t's block at a_off.
  void emit_signed_act(int t, int a_off) {
    vmovdqu8(ymm_a[t], act(t, a_off + kActHi));
    vpsubb(ymm_a[t] | k_neg, ymm_zero, ymm_a[t]);
    vmovdqu8(ymm_alo[t], act(t, a_off + kActLo));
    vpsubb(ymm_alo[t] | k_neg, ymm_zero, ymm_alo[t]);
  }

  // acc[2t + u] += float(dot(w block, v[t] block)) · d_a · d_w for the group's tokens.
  void emit_block(int group, int u, int w_off, int a_off) {
    emit_load_w(w_off);
    vpmovb2m(k_neg, ymm_w);
    vpabsb(ymm_absw, ymm_w);
    vpbroadcastw(xmm_dw, word[reg_w + w_off]);
    vcvtph2ps(ymm_dw, xmm_dw);
    for (int t = 0; t < group; ++t) {
      emit_signed_act(t, a_off);
      vpmaddubsw(ymm_a[t], ymm_absw, ymm_a[t]);      // hi pairs: |.| <= 32512, no saturation
      vpmaddwd(ymm_dot[t], ymm_a[t], ymm_c255);     // 255·Σ4 |w|·sign(w)·hi
      vpdpbusd(ymm_dot[t], ymm_absw, ymm_alo[t]);   // + Σ4 |w|·sign(w)·lo
      vcvtdq2ps(ymm_dot[t], ymm_dot[t]);
      vmulps(ymm_dot[t], ymm_dot[t], act_b(t, a_off));  // × d_a
      vfmadd231ps(ymm_acc[2 * t + u], ymm_dot[t], ymm_dw);
    }
  }

  // out[t][r] for the `group` tokens starting at reg_act_tok / reg_out_t.
  void emit_group(int group) override {
    Label l_blk;
    emit_group_pointers(group);
    for (int i = 0; i < 2 * group; ++i) vxorps(ymm_acc[i], ymm_acc[i], ymm_acc[i]);
    if (n_blocks_ >= 2) {
      mov(reg_blocks, n_blocks_ / 2);
      L(l_blk);
      emit_prefetch_w(0);  // a pair is 36 or 68 bytes
      if (!q4_) emit_prefetch_w(64);
      emit_block(group, 0, 0, 0);
      emit_block(group, 1, w_block_, kABlock);
      add(reg_w, 2 * w_block_);
      emit_advance_act(group, 2 * kABlock);
      dec(reg_blocks);
      jnz(l_blk, T_NEAR);
    }
    if (n_blocks_ % 2) emit_block(group, 0, 0, 0);
    emit_group_stores(group, [&](int t) {
      vaddps(ymm_w, ymm_acc[2 * t], ymm_acc[2 * t + 1]);
      emit_hsum_ymm(ymm_w, xmm_hi);
      return xmm_w;
    });
  }

  void emit_constants() {
    vpxord(ymm_zero, ymm_zero, ymm_zero);
    mov(eax, 0x00ff00ff);
    vpbroadcastd(ymm_c255, eax);
    if (!q4_) return;
    mov(eax, 0x0f0f0f0f);
    vmovd(xmm_w, eax);
    vpbroadcastd(ymm_mask, xmm_w);
    mov(eax, 0x08080808);
    vmovd(xmm_w, eax);
    vpbroadcastd(ymm_eight, xmm_w);
  }

  // for r in [0, n_rows):                        // weight row stays in L1 across tokens
  //   for each group of G tokens (G = 4 while 4 are left, then 3, 2 or 1 once):
  //     acc[G][2] = 0
  //     for i in [0, n_blocks / 2):              // block pairs
  //       prefetch w + distance
  //       for u < 2:                             // blocks b = 2i + u
  //         |w|, sign(w), d_w of w[r][b]         (once for the group)
  //         for g < G: acc[g][u] += float(255·dot(|w|, sign(w)·hi[g][b])
  //                                          + dot(|w|, sign(w)·lo[g][b])) · d_a · d_w
  //     tail block (n_blocks odd, emitted straight) into acc[g][0]
  //     out[g][r] = hsum(acc[g][0] + acc[g][1])
  void generate() override {
    preamble();
    emit_constants();
    emit_decode_loops(reg_rows);
    postamble();
  }

  bool q4_;       // Q4_0 (else Q8_0)
  int w_block_;   // bytes of a weight block
  int64_t n_blocks_;
};

}  // namespace

Expected<std::unique_ptr<GemvKernel>> create_gemv_legacy_avx512(const GemvDesc& desc,
                                                                const Avx512Tuning& tuning) {
  if ((desc.type != GGMLType::Q8_0 && desc.type != GGMLType::Q4_0) || desc.k <= 0 ||
      desc.k % 32 != 0) {
    return Error("legacy_avx512: needs Q8_0 or Q4_0 rows of a positive multiple of 32 "
                 "elements, got {}", desc.to_string());
  }
  KTX_RETURN_IF_ERROR(tuning.validate().with_context(desc.to_string()));
  return create_gemv_jit<GemvLegacyAvx512>(desc, tuning);
}

}  // namespace ktx::cpu
