// Generated AVX2 GEMV for Q6_K weights read in place (210-byte GGUF super-blocks: 128 bytes of
// low nibbles ql, 64 bytes of 2-bit high parts qh, sixteen int8 scales, fp16 d) against
// int16-grade activations split into int8 planes (ActBlockQ16_K: v = 255·hi + lo). Q4_K_M files
// store most experts' down projection in Q6_K, so without this kernel an AVX2 host ran a third
// of a Q4_K_M decode layer through the reference. Per super-block:
//   dot = d·d_a · Σ_s sc_s · Σ_{i∈s} w_i·v_i,   w = q − 32   (s: 16 sub-blocks of 16 elements)
// Element layout (ggml): half h (128 elements) uses ql[64h..64h+64) and qh[32h..32h+32); its
// element 32p + l (p < 4, l < 32) is the low (p < 2) or high (p >= 2) nibble of
// ql[64h + 32(p&1) + l], with bits 2p, 2p+1 of qh[32h + l] on top. So each 32-element group
// g = 4h + p is one 32-byte ql load (masked, or shifted by 4 and masked) ORed with the qh bytes
// shifted by 4 − 2p (a word shift: the bits a byte receives from its neighbour land outside
// the 0x30 mask), and covers sub-blocks 2g (lane 0) and 2g + 1 (lane 1).
// The levels q are unsigned (0..63), vpmaddubsw's unsigned operand, so each plane of the
// activations is read straight from memory: pair sums <= 2·63·127 = 16002, then vpmaddwd against
// [sc_2g ×8 | sc_2g+1 ×8] words into two int32 sums per token, one per plane, over the whole
// super-block (|Σ| <= 8·2·16002·128 ≈ 3.3e7: no wrap). The −32 offset of the levels is taken
// off once per super-block from the activations' 16-element sums:
//   Σ_s sc_s Σ_{i∈s} (q_i − 32)·v_i = (255·H + L) − 32 · Σ_s sc_s · bsum16_s
// where H and L are the plane sums, evaluated in float lane by lane (the lanes are summed at
// the end of the row). So a token costs three operations per plane and 32 elements. Tokens go
// in pairs sharing the decode of each super-block.
#include <cstddef>

#include "runtime/cpu/jit/gemv_jit_common.h"

namespace ktx::cpu {
namespace {

using namespace Xbyak;
using namespace Xbyak::util;

class GemvQ6_KAvx2 final : public GemvJit {
 public:
  explicit GemvQ6_KAvx2(const GemvDesc& desc) : n_blocks_(desc.k / 256) {}

  std::string name() const override { return "gemv_q6_k_avx2"; }
  ActFormat act_format() const override { return ActFormat::q16_k; }

 private:
  static constexpr int kMaxGroup = 2;        // tokens sharing one pass over a weight row
  static constexpr int kScaleSlot = 0;       // [rsp + 0, 32): the 16 scales as int16
  static constexpr int kDSlot = 32;          // [rsp + 32]: d as float
  static constexpr int kBlocksLeft = 40;     // [rsp + 40]: super-blocks left
  static constexpr int kFrame = 48;

  // reg_args, reg_w_row, reg_w, reg_act_tok, reg_out, reg_out_t, reg_toks: see GemvJit.
  const Reg64 reg_act[kMaxGroup] = {r8, rbp};  // current activation block of each token
  const Reg64 reg_rows = r11;     // rows left
  const Ymm ymm_acc[kMaxGroup] = {ymm0, ymm1};    // float: Σ d·d_a·(super-block dots)
  const Ymm ymm_hsum[kMaxGroup] = {ymm2, ymm3};   // int32: the hi plane's scaled dots
  const Ymm ymm_lsum[kMaxGroup] = {ymm4, ymm5};   // int32: the lo plane's scaled dots
  const Ymm ymm_q = ymm6;         // the group's levels q in [0, 63]
  const Ymm ymm_ql = ymm7;        // 32 bytes of low nibbles
  const Ymm ymm_qh = ymm8;        // the half's 32 bytes of high parts
  const Ymm ymm_sc = ymm9;        // [sc_2g ×8 | sc_2g+1 ×8] words
  const Ymm ymm_t = ymm10;        // temporaries (high bits, products, float sums)
  const Xmm xmm_t = xmm10;
  const Ymm ymm_u = ymm11;
  const Xmm xmm_u = xmm11;
  const Ymm ymm_m0f = ymm12;      // 0x0f bytes
  const Ymm ymm_m30 = ymm13;      // 0x30 bytes
  const Ymm ymm_scf[2] = {ymm14, ymm15};  // the 16 scales as floats (0..7, 8..15)

  void emit_bytes(const Ymm& dst, uint32_t byte) {
    mov(eax, byte * 0x01010101u);
    vmovd(Xmm(dst.getIdx()), eax);
    vpbroadcastd(dst, Xmm(dst.getIdx()));
  }

  // The 16 scales as words into the stack slot and as floats into ymm_scf; d into kDSlot.
  void emit_unpack_scales() {
    vpmovsxbw(ymm_t, ptr[reg_w + Q6KBlock::sc]);
    vmovdqu(ptr[rsp + kScaleSlot], ymm_t);
    for (int i = 0; i < 2; ++i) {
      vpmovsxbd(ymm_scf[i], ptr[reg_w + Q6KBlock::sc + 8 * i]);
      vcvtdq2ps(ymm_scf[i], ymm_scf[i]);
    }
    movzx(eax, word[reg_w + Q6KBlock::d]);
    vmovd(xmm_t, eax);
    vcvtph2ps(xmm_t, xmm_t);
    vmovss(dword[rsp + kDSlot], xmm_t);
  }

  // ymm_sc = [sc_2g ×8 | sc_2g+1 ×8] words (clobbers xmm_u).
  void emit_scale_vec(int g) {
    vpbroadcastw(Xmm(ymm_sc.getIdx()), word[rsp + kScaleSlot + 4 * g]);
    vpbroadcastw(xmm_u, word[rsp + kScaleSlot + 4 * g + 2]);
    vinserti128(ymm_sc, ymm_sc, xmm_u, 1);
  }

  // Group g = 4h + p: the levels q of its 32 elements (ymm_qh holds half h's high parts).
  void emit_levels(int h, int p) {
    vmovdqu(ymm_ql, ptr[reg_w + 64 * h + 32 * (p & 1)]);
    if (p < 2) {
      vpand(ymm_q, ymm_ql, ymm_m0f);
    } else {
      vpsrlw(ymm_q, ymm_ql, 4);
      vpand(ymm_q, ymm_q, ymm_m0f);
    }
    const int shift = 4 - 2 * p;        // bits 2p, 2p+1 of qh to bits 4, 5
    if (shift > 0) {
      vpsllw(ymm_t, ymm_qh, shift);
    } else if (shift < 0) {
      vpsrlw(ymm_t, ymm_qh, -shift);
    } else {
      vmovdqa(ymm_t, ymm_qh);
    }
    vpand(ymm_t, ymm_t, ymm_m30);
    vpor(ymm_q, ymm_q, ymm_t);          // q in [0, 63]
  }

  // Token t, group at element `off`: each plane's pairs scaled by the sub-block scales.
  void emit_token_dot(int t, int off) {
    const struct { int plane; const Ymm& sum; } planes[] = {{ActQ16K::hi, ymm_hsum[t]},
                                                            {ActQ16K::lo, ymm_lsum[t]}};
    for (const auto& pl : planes) {
      vpmaddubsw(ymm_t, ymm_q, ptr[reg_act[t] + pl.plane + off]);
      vpmaddwd(ymm_t, ymm_t, ymm_sc);
      vpaddd(pl.sum, pl.sum, ymm_t);
    }
  }

  // acc[t] += d·d_a · (255·H + L − 32·(sc ⊙ bsum16)), lane by lane.
  void emit_token_finish(int t) {
    vcvtdq2ps(ymm_u, ymm_lsum[t]);
    vcvtdq2ps(ymm_t, ymm_hsum[t]);
    vfmadd231ps(ymm_u, ymm_t, ptr[rip + l_c255_]);
    vcvtdq2ps(ymm_t, ptr[reg_act[t] + ActQ16K::bsum16]);
    vmulps(ymm_t, ymm_t, ymm_scf[0]);
    vcvtdq2ps(ymm_hsum[t], ptr[reg_act[t] + ActQ16K::bsum16 + 32]);  // free again: a temporary
    vfmadd231ps(ymm_t, ymm_hsum[t], ymm_scf[1]);
    vfnmadd231ps(ymm_u, ymm_t, ptr[rip + l_c32_]);
    vmovss(xmm_t, dword[rsp + kDSlot]);
    vmulss(xmm_t, xmm_t, dword[reg_act[t]]);  // d·d_a
    vbroadcastss(ymm_t, xmm_t);
    vfmadd231ps(ymm_acc[t], ymm_u, ymm_t);
  }

  // One super-block for `group` tokens.
  void emit_superblock(int group) {
    emit_unpack_scales();
    for (int t = 0; t < group; ++t) {
      vpxor(ymm_hsum[t], ymm_hsum[t], ymm_hsum[t]);
      vpxor(ymm_lsum[t], ymm_lsum[t], ymm_lsum[t]);
    }
    for (int h = 0; h < 2; ++h) {
      vmovdqu(ymm_qh, ptr[reg_w + Q6KBlock::qh + 32 * h]);
      for (int p = 0; p < 4; ++p) {
        const int g = 4 * h + p;
        emit_levels(h, p);
        emit_scale_vec(g);
        for (int t = 0; t < group; ++t) emit_token_dot(t, 32 * g);
      }
    }
    for (int t = 0; t < group; ++t) emit_token_finish(t);
  }

  // out[t][r] for the `group` tokens starting at reg_act_tok / reg_out_t.
  void emit_group(int group) {
    emit_pair_group(
        group, reg_act, n_blocks_, Q6KBlock::bytes, ActQ16K::bytes, qword[rsp + kBlocksLeft],
        [&] { for (int t = 0; t < group; ++t) vxorps(ymm_acc[t], ymm_acc[t], ymm_acc[t]); },
        [&] { emit_superblock(group); },
        [&](int t) {
          emit_hsum_ymm(ymm_acc[t], xmm_t);
          return Xmm(ymm_acc[t].getIdx());
        });
  }

  // for r in [0, n_rows):                        // weight row stays in L1 across tokens
  //   for each group of G tokens (G = 2, then 1 for an odd last token):
  //     acc[G] = 0
  //     for b in [0, n_blocks):                  // 256-element super-blocks
  //       scales as words (stack) and floats; d; H[G] = L[G] = 0   (once for the group)
  //       for h < 2, p < 4:                      // group g = 4h + p, 32 elements
  //         q of group g; [sc_2g ×8 | sc_2g+1 ×8]                  (once)
  //         for t < G: H[t] += sc ⊙ pairs(q·hi); L[t] += sc ⊙ pairs(q·lo)
  //       for t < G: acc[t] += d·d_a · (255·H[t] + L[t] − 32·sc ⊙ a[t][b].bsum16)
  //     out[t][r] = hsum(acc[t])
  void generate() override {
    preamble();
    sub(rsp, kFrame);
    emit_bytes(ymm_m0f, 0x0f);
    emit_bytes(ymm_m30, 0x30);
    emit_row_loop(reg_rows, nullptr, [&](const Label& row_next) {
      emit_token_groups(kMaxGroup, row_next, nullptr, [&](int g) { emit_group(g); });
    });
    add(rsp, kFrame);
    postamble();
    align(32);
    L(l_c255_);                       // 255.0f ×8
    for (int i = 0; i < 8; ++i) dd(0x437f0000);
    L(l_c32_);                        // 32.0f ×8
    for (int i = 0; i < 8; ++i) dd(0x42000000);
  }

  Label l_c255_, l_c32_;
  int64_t n_blocks_;
};

}  // namespace

Expected<std::unique_ptr<GemvKernel>> create_gemv_q6_k_avx2(const GemvDesc& desc) {
  if (desc.type != GGMLType::Q6_K || desc.k <= 0 || desc.k % 256 != 0) {
    return Error("q6_k_avx2: needs Q6_K rows of a positive multiple of 256 elements, got {}",
                 desc.to_string());
  }
  return create_gemv_jit<GemvQ6_KAvx2>(desc);
}

}  // namespace ktx::cpu
