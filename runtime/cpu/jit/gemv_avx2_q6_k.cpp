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
// The levels are signed, so the sign moves to the activation (vpsignb, as in
// gemv_avx2_legacy.cpp): |w| <= 32 times sign(w)·plane through vpmaddubsw (pair sums
// <= 2·32·127 = 8128), then vpmaddwd against [sc_2g ×8 | sc_2g+1 ×8] words (lo plane) or
// 255 × them (hi plane; |255·sc| <= 32640 fits int16) into int32. A dword lane gathers 16
// elements of a half: |Σ| <= 16·32·32512·128 = 2 130 706 432 < 2^31, but a whole super-block
// could reach twice that, so each half's int32 sums are converted to float (exact enough:
// float rounding, no wrap) and added before the super-block's d·d_a scaling. Tokens go in
// pairs sharing the decode of each super-block.
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
  static constexpr int kScale255Slot = 32;   // [rsp + 32, 64): 255 × them
  static constexpr int kHalfSlot = 64;       // [rsp + 64, 128): half 0's float sums per token
  static constexpr int kDSlot = 128;         // [rsp + 128]: d as float
  static constexpr int kBlocksLeft = 136;    // [rsp + 136]: super-blocks left
  static constexpr int kFrame = 144;

  // reg_args, reg_w_row, reg_w, reg_act_tok, reg_out, reg_out_t, reg_toks: see GemvJit.
  const Reg64 reg_act[kMaxGroup] = {r8, rbp};  // current activation block of each token
  const Reg64 reg_rows = r11;     // rows left
  const Ymm ymm_acc[kMaxGroup] = {ymm0, ymm1};    // float: Σ d·d_a·(scaled integer dots)
  const Ymm ymm_isum[kMaxGroup] = {ymm2, ymm3};   // int32 dot of the current half
  const Ymm ymm_ql = ymm4;        // 32 bytes of low nibbles
  const Ymm ymm_qh = ymm5;        // the half's 32 bytes of high parts
  const Ymm ymm_absw = ymm6;      // |w| of the group
  const Ymm ymm_w = ymm7;         // w = q − 32 (its sign steers vpsignb)
  const Ymm ymm_sc = ymm8;        // [sc_2g ×8 | sc_2g+1 ×8] words
  const Ymm ymm_sc255 = ymm9;     // 255 × ymm_sc
  const Ymm ymm_a = ymm10;        // a plane times sign(w), then its products
  const Ymm ymm_t = ymm11;        // temporaries (high bits, scale building, float sums)
  const Xmm xmm_t = xmm11;
  const Ymm ymm_u = ymm12;
  const Xmm xmm_u = xmm12;
  const Ymm ymm_m0f = ymm13;      // 0x0f bytes
  const Ymm ymm_m30 = ymm14;      // 0x30 bytes
  const Ymm ymm_c32 = ymm15;      // 32 in every byte

  void emit_bytes(const Ymm& dst, uint32_t byte) {
    mov(eax, byte * 0x01010101u);
    vmovd(Xmm(dst.getIdx()), eax);
    vpbroadcastd(dst, Xmm(dst.getIdx()));
  }

  // The 16 scales as words (and 255 × them) into the stack slots; d into kDSlot.
  void emit_unpack_scales() {
    vpmovsxbw(ymm_t, ptr[reg_w + Q6KBlock::sc]);
    vmovdqu(ptr[rsp + kScaleSlot], ymm_t);
    vpsllw(ymm_u, ymm_t, 8);            // 256·sc − sc: |·| <= 32640
    vpsubw(ymm_u, ymm_u, ymm_t);
    vmovdqu(ptr[rsp + kScale255Slot], ymm_u);
    movzx(eax, word[reg_w + Q6KBlock::d]);
    vmovd(xmm_t, eax);
    vcvtph2ps(xmm_t, xmm_t);
    vmovss(dword[rsp + kDSlot], xmm_t);
  }

  // dst = [s_2g ×8 | s_2g+1 ×8] words from the slot (clobbers xmm_u).
  void emit_scale_vec(const Ymm& dst, int slot, int g) {
    vpbroadcastw(Xmm(dst.getIdx()), word[rsp + slot + 4 * g]);
    vpbroadcastw(xmm_u, word[rsp + slot + 4 * g + 2]);
    vinserti128(dst, dst, xmm_u, 1);
  }

  // Group g = 4h + p: |w| and w of its 32 elements (ymm_qh holds half h's high parts).
  void emit_levels(int h, int p) {
    vmovdqu(ymm_ql, ptr[reg_w + 64 * h + 32 * (p & 1)]);
    if (p < 2) {
      vpand(ymm_absw, ymm_ql, ymm_m0f);
    } else {
      vpsrlw(ymm_absw, ymm_ql, 4);
      vpand(ymm_absw, ymm_absw, ymm_m0f);
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
    vpor(ymm_absw, ymm_absw, ymm_t);    // q in [0, 63]
    vpsubb(ymm_w, ymm_absw, ymm_c32);   // w in [-32, 31]
    vpabsb(ymm_absw, ymm_w);
  }

  // isum[t] += scales ⊙ pairs(|w| · sign(w)·plane) for both planes of token t's group.
  void emit_token_dot(int t, int off) {
    for (int plane = 0; plane < 2; ++plane) {
      vmovdqu(ymm_a, ptr[reg_act[t] + (plane == 0 ? ActQ16K::hi : ActQ16K::lo) + off]);
      vpsignb(ymm_a, ymm_a, ymm_w);
      vpmaddubsw(ymm_a, ymm_absw, ymm_a);
      vpmaddwd(ymm_a, ymm_a, plane == 0 ? ymm_sc255 : ymm_sc);
      vpaddd(ymm_isum[t], ymm_isum[t], ymm_a);
    }
  }

  // One super-block for `group` tokens.
  void emit_superblock(int group) {
    emit_unpack_scales();
    for (int h = 0; h < 2; ++h) {
      for (int t = 0; t < group; ++t) vpxor(ymm_isum[t], ymm_isum[t], ymm_isum[t]);
      vmovdqu(ymm_qh, ptr[reg_w + Q6KBlock::qh + 32 * h]);
      for (int p = 0; p < 4; ++p) {
        const int g = 4 * h + p;
        emit_levels(h, p);
        emit_scale_vec(ymm_sc, kScaleSlot, g);
        emit_scale_vec(ymm_sc255, kScale255Slot, g);
        for (int t = 0; t < group; ++t) emit_token_dot(t, 32 * g);
      }
      for (int t = 0; t < group; ++t) {  // half sums to float: no int32 wrap (see header)
        vcvtdq2ps(ymm_t, ymm_isum[t]);
        if (h == 0) {
          vmovups(ptr[rsp + kHalfSlot + 32 * t], ymm_t);
        } else {
          vaddps(ymm_t, ymm_t, ptr[rsp + kHalfSlot + 32 * t]);
          vmovss(xmm_u, dword[rsp + kDSlot]);
          vmulss(xmm_u, xmm_u, dword[reg_act[t]]);  // d·d_a
          vbroadcastss(ymm_u, xmm_u);
          vfmadd231ps(ymm_acc[t], ymm_t, ymm_u);
        }
      }
    }
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
  //       scales (and 255 ×) as words to the stack; d          (once for the group)
  //       for h < 2:                             // halves of 128 elements
  //         isum[G] = 0; qh = high parts of half h
  //         for p < 4:                           // group g = 4h + p, 32 elements
  //           |w|, w of group g; [sc_2g ×8 | sc_2g+1 ×8] and 255 ×   (once)
  //           for t < G: isum[t] += sc255 ⊙ pairs(|w|·sign(w)·hi) + sc ⊙ pairs(|w|·sign(w)·lo)
  //         half 0: keep float(isum[t]); half 1: acc[t] += d·d_a · (kept + float(isum[t]))
  //     out[t][r] = hsum(acc[t])
  void generate() override {
    preamble();
    sub(rsp, kFrame);
    emit_bytes(ymm_m0f, 0x0f);
    emit_bytes(ymm_m30, 0x30);
    emit_bytes(ymm_c32, 0x20);
    emit_row_loop(reg_rows, nullptr, [&](const Label& row_next) {
      emit_token_groups(kMaxGroup, row_next, nullptr, [&](int g) { emit_group(g); });
    });
    add(rsp, kFrame);
    postamble();
  }

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
