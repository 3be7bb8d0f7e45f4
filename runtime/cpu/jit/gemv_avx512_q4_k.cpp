// Generated AVX-512 VNNI GEMV for Q4_K and Q5_K weights read in place against q16_k activations
// (ActBlockQ16_K: v = 255·hi + lo, two int8 planes, |v| <= 32512). Q4_K: 144-byte GGUF
// super-blocks (fp16 d and dmin, twelve bytes of packed 6-bit scales/mins, 128 bytes of
// nibbles). Q5_K: 176 bytes, the same plus 32 bytes of fifth bits (qh) between the scales and
// the nibbles. Per super-block of 256 elements:
//   dot = d·d_a · Σ_s sc_s · Σ_{i∈s} q_i·v_i  −  dmin·d_a · Σ_s m_s · bsum32_s
// Levels are unsigned (0..15, Q5_K 0..31) and both activation planes signed, which is exactly
// vpdpbusd's operand order, so no sign trick is needed. One 32-byte nibble chunk j holds
// sub-block 2j (low nibbles) and 2j+1 (high nibbles); it is broadcast to both 256-bit halves of
// a zmm and the upper half shifted right by 4 (vpsrlvq), so after the 0x0f mask the 64 bytes are
// elements 64j..64j+63 in order and line up with one contiguous 64-byte load of either plane.
// Q5_K: qh byte l holds the fifth bit of element 64j+l in bit 2j and of 64j+32+l in bit 2j+1; qh
// is broadcast the same way with the upper half shifted one bit further, then shifted by 2 per
// chunk, so bit 0 of every byte is the fifth bit of its element (moved to bit 4 and ORed in).
// Exactness, per chunk and token: vpdpbusd(q, plane) into a zeroed register gives per-dword
// sums of 4 products, |sum| <= 4·31·127 = 15748 < 2^15. vpackssdw packs the hi plane's and the
// lo plane's dwords into words without saturating (per 128-bit lane: 4 hi words, then 4 lo
// words; a lane's dwords all belong to one sub-block: lanes 0,1 are sub-block 2j, lanes 2,3 are
// 2j+1), and one vpdpwssd multiplies each word by its scale — 255·sc_s (<= 16065, an int16) for
// hi words, sc_s for lo words; vpermw builds that scale vector from a 16-word table [sc ×8,
// 255·sc ×8] per chunk — and adds word pairs into the int32 isum. So a token costs two byte
// dots and one word dot per chunk (three port-0 operations; two scalings would be four: the
// integer multiply port bounds this kernel at one token per expert). A hi dword of isum gathers
// two products per chunk: |isum| <= 8·15748·16065 ≈ 2.02e9 < 2^31 for Q5_K (Q4_K: 9.8e8; lo
// dwords far less), and every partial sum is bounded the same way. The min term takes the int32
// bsums: m_s·bsum32_s <= 63·2^20 (vpmulld, exact), converted, scaled by dmin and taken off
// lanes 0..7 of d·isum before the token's scale. Only the super-block scalings are float.
// Tokens go in groups of up to four: a super-block's scales and levels are decoded once per
// group.
// The weight stream is prefetched a tunable distance ahead (Avx512Tuning); it is contiguous
// across the rows of a task, so the prefetch also warms the next row.
#include <cstddef>

#include "runtime/cpu/jit/gemv_jit_common.h"

namespace ktx::cpu {
namespace {

using namespace Xbyak;
using namespace Xbyak::util;

class GemvQ4_KAvx512 final : public GemvAvx512Jit {
 public:
  GemvQ4_KAvx512(const GemvDesc& desc, const Avx512Tuning& tuning)
      : GemvAvx512Jit(tuning), q5_(desc.type == GGMLType::Q5_K), n_blocks_(desc.k / 256) {}

  std::string name() const override { return q5_ ? "gemv_q5_k_avx512" : "gemv_q4_k_avx512"; }
  ActFormat act_format() const override { return ActFormat::q16_k; }

 private:
  static constexpr int kFrame = 16;       // stack locals below the saved registers
  static constexpr int kBlocksLeft = 0;   // [rsp + 0]: super-blocks left in the row
  static constexpr int kRowsLeft = 8;     // [rsp + 8]: rows left

  // reg_args, reg_w_row, reg_w, reg_act_tok, reg_out, reg_out_t, reg_toks: see GemvJit;
  // reg_act0, reg_act2, reg_astride and act(t, off): see GemvAvx512Jit.
  const Reg32 reg_sc_lo = r12d;   // scales 0..3, one per byte
  const Reg32 reg_mn_lo = r13d;   // mins 0..3
  const Reg32 reg_sc_hi = r14d;   // scales 4..7
  const Reg32 reg_mn_hi = r15d;   // mins 4..7
  // Registers read by VEX-only instructions (vhaddps) stay below 16.
  // acc: float Σ d·d_a·(int dots), minus dmin·d_a·(m·bsum) in lanes 0..7.
  const Zmm zmm_acc[kMaxGroup] = {zmm0, zmm1, zmm2, zmm3};
  const Zmm zmm_dot_lo = zmm4;    // the lo plane's 4-product sums
  const Xmm xmm_t0 = xmm8;        // temporaries (scale unpacking, horizontal sums)
  const Ymm ymm_t0 = ymm8;
  const Xmm xmm_t1 = xmm9;
  const Ymm ymm_t1 = ymm9;
  const Zmm zmm_scw = zmm9;       // = t1 during the chunks: words [sc_0..7, 255·sc_0..7]
  const Zmm zmm_isum[kMaxGroup] = {zmm10, zmm11, zmm12, zmm13};  // int32 dot of a super-block
  const Zmm zmm_dot = zmm14;      // the hi plane's 4-product sums, then both packed to words
  const Zmm zmm_qh = zmm15;       // Q5_K: fifth bits, bit 0 of each byte is the current chunk's
  const Zmm zmm_hs = zmm16;       // Q5_K: fifth bits moved to bit 4
  const Zmm zmm_bit4 = zmm17;     // Q5_K: 0x10 bytes
  const Zmm zmm_q = zmm18;        // 64 nibbles of chunk j, in element order
  const Zmm zmm_sc = zmm19;       // per 128-bit lane [255·sc ×4, sc ×4] words of its sub-block
  const Ymm ymm_mins = ymm21;     // the 8 mins as dwords
  const Zmm zmm_d = zmm22;        // d, broadcast
  const Zmm zmm_dmin = zmm23;     // dmin, broadcast
  const Zmm zmm_mask = zmm24;     // 0x0f bytes
  const Zmm zmm_shift = zmm25;    // qword shifts [0 ×4, 4 ×4]: high nibbles in the upper half
  const Zmm zmm_idx[4] = {zmm26, zmm27, zmm28, zmm29};  // vpermw: zmm_sc of chunk j
  const Zmm zmm_m = zmm30;        // per-token min products (lanes 0..7; the rest zero)
  const Ymm ymm_m = ymm30;
  const Zmm zmm_qh_shift = zmm31; // Q5_K: qword shifts [0 ×4, 1 ×4]
  const Opmask k_lo8 = k3;        // lanes 0..7: where the min term lands

  // Constants: nibble mask, half shifts, the four vpermw index vectors, the min-term lanes.
  void emit_constants() {
    mov(eax, 0xff);
    kmovw(k_lo8, eax);
    mov(eax, 0x0f0f0f0f);
    vpbroadcastd(zmm_mask, eax);
    mov(eax, 0xf0);
    kmovw(k1, eax);
    mov(eax, 4);
    vpbroadcastq(zmm_shift | k1 | T_z, rax);
    for (int j = 0; j < 4; ++j) vmovdqu16(zmm_idx[j], ptr[rip + l_idx_ + 64 * j]);
    if (!q5_) return;
    mov(eax, 0x10101010);
    vpbroadcastd(zmm_bit4, eax);
    mov(eax, 1);
    vpbroadcastq(zmm_qh_shift | k1 | T_z, rax);
  }

  // Unpack the 6-bit scales and mins of the block at reg_w (see get_scale_min_k4): mins as
  // dwords into ymm_mins, d and dmin into zmm_d / zmm_dmin, and last the scale table zmm_scw
  // (it lives in the temporary t1 until the chunks are done).
  void emit_unpack_scales() {
    emit_unpack_scales_k4(reg_sc_lo, reg_mn_lo, reg_sc_hi, reg_mn_hi);
    // The 8 scales (and the 8 mins) as one qword each: one vmovq instead of vmovd + vpinsrd
    // (the 32-bit writes above cleared the upper halves).
    const Reg64 sc8(reg_sc_lo.getIdx()), sc_hi(reg_sc_hi.getIdx());
    const Reg64 mn8(reg_mn_lo.getIdx()), mn_hi(reg_mn_hi.getIdx());
    shl(sc_hi, 32);
    or_(sc8, sc_hi);
    shl(mn_hi, 32);
    or_(mn8, mn_hi);
    vmovq(xmm_t1, mn8);
    vpmovzxbd(ymm_mins, xmm_t1);
    vmovd(xmm_t0, dword[reg_w]);        // fp16 d, dmin -> float
    vcvtph2ps(xmm_t0, xmm_t0);
    vbroadcastss(zmm_d, xmm_t0);
    vmovshdup(xmm_t1, xmm_t0);
    vbroadcastss(zmm_dmin, xmm_t1);
    vmovq(xmm_t0, sc8);
    vpmovzxbw(xmm_t1, xmm_t0);          // sc as words
    vpsllw(xmm_t0, xmm_t1, 8);          // 256·sc − sc
    vpsubw(xmm_t0, xmm_t0, xmm_t1);
    vinserti128(ymm_t1, ymm_t1, xmm_t0, 1);  // [sc ×8, 255·sc ×8]; the zmm's upper half is 0
  }

  // isum[t] (+)= scales ⊙ packed words of dpbusd(q, hi) and dpbusd(q, lo); see the header.
  void emit_token_dot(int t, int j) {
    vpxord(zmm_dot, zmm_dot, zmm_dot);
    vpdpbusd(zmm_dot, zmm_q, act(t, ActQ16K::hi + 64 * j));
    vpxord(zmm_dot_lo, zmm_dot_lo, zmm_dot_lo);
    vpdpbusd(zmm_dot_lo, zmm_q, act(t, ActQ16K::lo + 64 * j));
    vpackssdw(zmm_dot, zmm_dot, zmm_dot_lo);
    if (j == 0) {
      vpmaddwd(zmm_isum[t], zmm_dot, zmm_sc);
    } else {
      vpdpwssd(zmm_isum[t], zmm_dot, zmm_sc);
    }
  }

  // One super-block for `group` tokens.
  void emit_superblock(int group) {
    for (int p = 0; p < Q45KBlock::bytes(q5_); p += 64) {
      emit_prefetch_w(p);
    }
    emit_unpack_scales();
    if (q5_) {
      vbroadcasti64x4(zmm_qh, ptr[reg_w + Q45KBlock::qh]);
      vpsrlvq(zmm_qh, zmm_qh, zmm_qh_shift);
    }
    for (int j = 0; j < 4; ++j) {       // 64 elements: sub-blocks 2j (low), 2j+1 (high)
      vbroadcasti64x4(zmm_q, ptr[reg_w + Q45KBlock::qs(q5_) + 32 * j]);
      vpsrlvq(zmm_q, zmm_q, zmm_shift);
      vpandd(zmm_q, zmm_q, zmm_mask);
      if (q5_) {                        // q |= (qh bit 0) << 4, then the next chunk's bits
        vpsllw(zmm_hs, zmm_qh, 4);
        vpternlogd(zmm_q, zmm_hs, zmm_bit4, 0xf8);  // q | (hs & 0x10)
        if (j < 3) vpsrlq(zmm_qh, zmm_qh, 2);
      }
      vpermw(zmm_sc, zmm_idx[j], zmm_scw);
      for (int t = 0; t < group; ++t) emit_token_dot(t, j);  // v = 255·hi + lo
    }
    for (int t = 0; t < group; ++t) {  // acc += d_a · (d·isum − dmin·(m ⊙ bsum32) on lanes 0..7)
      vcvtdq2ps(zmm_isum[t], zmm_isum[t]);
      vmulps(zmm_isum[t], zmm_isum[t], zmm_d);
      vpmulld(ymm_m, ymm_mins, act(t, ActQ16K::bsum));     // m_s · bsum32_s, exact in int32
      vcvtdq2ps(ymm_m, ymm_m);
      vfnmadd231ps(zmm_isum[t] | k_lo8, zmm_m, zmm_dmin);
      vfmadd231ps(zmm_acc[t], zmm_isum[t], act_b(t, 0));
    }
  }

  // out[t][r] for the `group` tokens starting at reg_act_tok / reg_out_t.
  void emit_group(int group) override {
    emit_superblock_group(group, n_blocks_, Q45KBlock::bytes(q5_), ActQ16K::bytes,
                          qword[rsp + kBlocksLeft], zmm_acc, ymm_t0, xmm_t1,
                          [&] { emit_superblock(group); });
  }

  // for r in [0, n_rows):                        // weight row stays in L1 across tokens
  //   for each group of G tokens (G = 4 while 4 are left, then 3, 2 or 1 once):
  //     acc[G] = 0
  //     for b in [0, n_blocks):                  // 256-element super-blocks
  //       prefetch w + distance; unpack scales/mins/d/dmin of w[r][b]   (once for the group)
  //       Q5_K: qh = fifth bits, upper half shifted by one
  //       for j < 4:                             // 64 elements per step
  //         q = nibbles of chunk j in element order; sc = vpermw(idx_j, scale table) (once)
  //         Q5_K: q |= (qh & 1) << 4 per byte; qh >>= 2
  //         for g < G: isum[g] += sc ⊙ words(pack(dpbusd(q, a[g][b].hi[64j, 64j+64)),
  //                                                dpbusd(q, a[g][b].lo[64j, 64j+64))))
  //       for g < G:
  //         t = d · float(isum[g]);  t[0..8) −= dmin · float(mins ⊙ a[g][b].bsum32)
  //         acc[g] += d_a · t
  //     out[g][r] = hsum(acc[g])
  void generate() override {
    preamble();
    sub(rsp, kFrame);
    emit_constants();
    emit_decode_loops(qword[rsp + kRowsLeft]);
    add(rsp, kFrame);
    postamble();
    emit_index_table();
  }

  // The vpermw indices into [sc ×8, 255·sc ×8]: chunk j, 128-bit lane L (sub-block
  // s = 2j + L/2), words 0..3 (hi) pick 255·sc_s, words 4..7 (lo) pick sc_s.
  void emit_index_table() {
    align(64);
    L(l_idx_);
    for (int j = 0; j < 4; ++j) {
      for (int lane = 0; lane < 4; ++lane) {
        const int sub = 2 * j + lane / 2;
        for (int w = 0; w < 8; ++w) dw(w < 4 ? 8 + sub : sub);
      }
    }
  }

  Label l_idx_;         // emit_index_table()
  bool q5_;             // Q5_K (else Q4_K)
  int64_t n_blocks_;
};

}  // namespace

Expected<std::unique_ptr<GemvKernel>> create_gemv_q4_k_avx512(const GemvDesc& desc,
                                                              const Avx512Tuning& tuning) {
  if ((desc.type != GGMLType::Q4_K && desc.type != GGMLType::Q5_K) || desc.k <= 0 ||
      desc.k % 256 != 0) {
    return Error("q4_k_avx512: needs Q4_K or Q5_K rows of a positive multiple of 256 elements, "
                 "got {}", desc.to_string());
  }
  KTX_RETURN_IF_ERROR(tuning.validate().with_context(desc.to_string()));
  return create_gemv_jit<GemvQ4_KAvx512>(desc, tuning);
}

}  // namespace ktx::cpu
