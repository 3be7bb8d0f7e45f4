// Generated AVX-512 VNNI GEMV for Q6_K weights read in place (210-byte GGUF super-blocks: 128
// bytes of low nibbles ql, 64 bytes of 2-bit high parts qh, sixteen int8 scales, fp16 d)
// against q16_k activations (ActBlockQ16_K: v = 255·hi + lo, two int8 planes in [-127, 127]).
// Q4_K_M files store the experts' down projection in Q6_K, so this kernel carries a third of a
// decode layer's bytes. Per super-block:
//   dot = d·d_a · Σ_s sc_s · Σ_{i∈s} w_i·v_i,   w = q − 32   (s: 16 sub-blocks of 16 elements)
// Element layout (ggml): half h (128 elements) uses ql[64h..64h+64) and qh[32h..32h+32); its
// element 32p+l (p < 4, l < 32) is the nibble (p odd: high) of ql[64h + 32(p&1) + l] with bits
// 2p, 2p+1 of qh[32h+l] on top. So one 64-byte ql load gives two 64-element chunks in element
// order (low nibbles, then high nibbles), and the 32 qh bytes broadcast to both zmm halves and
// rotated per qword by [4, 2] (chunk 2h) or [0, -2] (chunk 2h+1) bring each element's two high
// bits (2p, 2p+1) to bits 4..5 of its byte, where they are ORed onto the nibble. Weights
// w in [-32, 31] are signed like the activations, so the sign moves to the activation (as in
// gemv_avx512_legacy.cpp): |w| (unsigned) times sign(w)·a, a negated under the mask of
// negative w; neither plane holds -128, so the negation cannot wrap.
// Per chunk and token each plane takes one vpdpbusd (per-dword sums of 4 products, |sum| <=
// 4·32·127 = 16256 < 2^15: a sign-extended int16) and one vpdpwssd against [scale, 0] word pairs
// (vpermd of the 16 sign-extended scales; dword i covers 4 elements of one sub-block): 255·sc
// for hi (|255·sc| <= 32640, an int16) and sc for lo, both into one int32 isum. Each isum dword
// gathers 16 elements of a super-block: |isum| <= 16·128·32·32512 = 2130706432 < 2^31 − 1 =
// 2147483647, tight but exact, and every partial sum is bounded the same way. Only the
// super-block scaling is float. Tokens go in groups of up to four sharing the decode of each
// super-block; prefetch as in Avx512Tuning.
#include <cstddef>

#include "runtime/cpu/jit/gemv_jit_common.h"

namespace ktx::cpu {
namespace {

using namespace Xbyak;
using namespace Xbyak::util;

class GemvQ6_KAvx512 final : public GemvAvx512Jit {
 public:
  GemvQ6_KAvx512(const GemvDesc& desc, const Avx512Tuning& tuning)
      : GemvAvx512Jit(tuning), n_blocks_(desc.k / 256) {}

  std::string name() const override { return "gemv_q6_k_avx512"; }
  ActFormat act_format() const override { return ActFormat::q16_k; }

 private:

  // reg_args, reg_w_row, reg_w, reg_act_tok, reg_out, reg_out_t, reg_toks: see GemvJit;
  // reg_act0, reg_act2, reg_astride and act(t, off): see GemvAvx512Jit.
  const Reg64 reg_blocks = r12;   // super-blocks left in the row
  const Reg64 reg_rows = r13;     // rows left
  // Registers read by VEX-only instructions (vhaddps) stay below 16.
  const Zmm zmm_acc[kMaxGroup] = {zmm0, zmm1, zmm2, zmm3};  // float: Σ d·d_a·(int dots)
  const Xmm xmm_t0 = xmm4;        // horizontal-sum temporaries; d while decoding
  const Ymm ymm_t0 = ymm4;
  const Xmm xmm_t1 = xmm5;
  const Zmm zmm_isum[kMaxGroup] = {zmm6, zmm7, zmm8, zmm9};  // int32 dot of a super-block
  const Zmm zmm_dot = zmm10;      // Σ w·a per dword (one token and plane at a time)
  const Zmm zmm_sc255 = zmm11;    // 255 × zmm_sc: the hi plane's scales
  const Zmm zmm_q = zmm12;        // 64 levels q of the current chunk, then |q − 32|
  const Zmm zmm_hs = zmm13;       // qh rotated: the chunk's high bits at bits 4..5
  const Zmm zmm_ql = zmm14;       // ql[64h..64h+64)
  const Zmm zmm_qh = zmm15;       // qh[32h..32h+32) in both halves
  const Zmm zmm_sc16 = zmm16;     // the 16 scales as [sc, 0] word pairs
  const Ymm ymm_sc16 = ymm16;
  const Zmm zmm_sc = zmm17;       // the current chunk's scale per dword
  const Zmm zmm_d = zmm18;        // d, broadcast
  const Zmm zmm_idx[4] = {zmm19, zmm20, zmm21, zmm22};  // vpermd: dword i -> scale 4c + i/4
  const Zmm zmm_lo4 = zmm23;      // 0x0f bytes
  const Zmm zmm_hi2 = zmm24;      // 0x30 bytes
  const Zmm zmm_c32 = zmm25;      // 32 in every byte
  const Zmm zmm_rot[2] = {zmm26, zmm27};  // qword left rotations [4 ×4, 2 ×4], [0 ×4, 62 ×4]
  const Zmm zmm_a = zmm28;        // 64 activations of one plane, then sign(w)·a
  const Zmm zmm_f = zmm29;        // float temporary; 255·sc words while decoding the scales
  const Ymm ymm_f = ymm29;
  const Zmm zmm_sc16_255 = zmm30; // 255 × zmm_sc16
  const Zmm zmm_zero = zmm31;
  const Opmask k_neg = k2;        // bytes where w < 0

  void emit_bytes(const Zmm& dst, uint32_t byte) {
    mov(eax, byte * 0x01010101u);
    vpbroadcastd(dst, eax);
  }

  // Masks, the vpermd indices [0 ×4, 1 ×4, 2 ×4, 3 ×4] + 4c, the qh shifts, zero.
  void emit_constants() {
    vpxord(zmm_zero, zmm_zero, zmm_zero);
    emit_bytes(zmm_lo4, 0x0f);
    emit_bytes(zmm_hi2, 0x30);
    emit_bytes(zmm_c32, 0x20);
    vpxord(zmm_idx[0], zmm_idx[0], zmm_idx[0]);
    for (int v = 1; v < 4; ++v) {
      mov(eax, 0xf << (4 * v));
      kmovw(k1, eax);
      mov(eax, v);
      vpbroadcastd(zmm_idx[0] | k1, eax);
    }
    for (int c = 1; c < 4; ++c) {
      mov(eax, 4 * c);
      vpbroadcastd(zmm_f, eax);
      vpaddd(zmm_idx[c], zmm_idx[0], zmm_f);
    }
    // Bits 2p'..2p'+1 of a byte to bits 4..5: rotate left by 4 - 2p' (mod 64), p' = 2p (low
    // half) or 2p + 1 (upper half). A rotation, not a shift, so p' = 3 needs no second op; the
    // bits it carries across bytes fall outside the 0x30 mask.
    mov(eax, 0xf0);
    kmovw(k1, eax);
    for (int p = 0; p < 2; ++p) {
      mov(eax, (4 - 4 * p) & 63);
      vpbroadcastq(zmm_rot[p], rax);
      mov(eax, (2 - 4 * p) & 63);
      vpbroadcastq(zmm_rot[p] | k1, rax);
    }
  }

  // The 16 scales of the block at reg_w as [sc, 0] and [255·sc, 0] word pairs; d broadcast.
  void emit_unpack_scales() {
    vpmovsxbw(ymm_sc16, ptr[reg_w + Q6KBlock::sc]);  // int8 -> int16
    vpsllw(ymm_f, ymm_sc16, 8);                // 256·sc: -32768 at sc = -128, still an int16
    vpsubw(ymm_f, ymm_f, ymm_sc16);            // 255·sc in [-32640, 32385]
    vpmovzxwd(zmm_sc16_255, ymm_f);            // high words zero
    vpmovzxwd(zmm_sc16, ymm_sc16);
    movzx(eax, word[reg_w + Q6KBlock::d]);
    vmovd(xmm_t0, eax);
    vcvtph2ps(xmm_t0, xmm_t0);
    vbroadcastss(zmm_d, xmm_t0);
  }

  // isum[t] (+)= scale ⊙ dpbusd(|w|, sign(w)·plane): 4-product dword sums fit int16.
  void emit_plane_dot(int t, int plane_off, const Zmm& scale, bool first) {
    vmovdqu8(zmm_a, act(t, plane_off));
    vpsubb(zmm_a | k_neg, zmm_zero, zmm_a);
    vpxord(zmm_dot, zmm_dot, zmm_dot);
    vpdpbusd(zmm_dot, zmm_q, zmm_a);
    if (first) {
      vpmaddwd(zmm_isum[t], zmm_dot, scale);
    } else {
      vpdpwssd(zmm_isum[t], zmm_dot, scale);
    }
  }

  // One super-block for `group` tokens.
  void emit_superblock(int group) {
    for (int p = 0; p < Q6KBlock::bytes; p += 64) {
      emit_prefetch_w(p);
    }
    emit_unpack_scales();
    for (int h = 0; h < 2; ++h) {
      vmovdqu8(zmm_ql, ptr[reg_w + 64 * h]);
      vbroadcasti64x4(zmm_qh, ptr[reg_w + Q6KBlock::qh + 32 * h]);
      for (int p = 0; p < 2; ++p) {       // chunk c = elements 64c..64c+63
        const int c = 2 * h + p;
        if (p == 0) {
          vpandd(zmm_q, zmm_ql, zmm_lo4);
        } else {
          vpsrlw(zmm_q, zmm_ql, 4);
          vpandd(zmm_q, zmm_q, zmm_lo4);
        }
        vprolvq(zmm_hs, zmm_qh, zmm_rot[p]);
        vpternlogd(zmm_q, zmm_hs, zmm_hi2, 0xf8);  // q | (hs & 0x30)
        vpsubb(zmm_q, zmm_q, zmm_c32);             // w = q − 32
        vpmovb2m(k_neg, zmm_q);
        vpabsb(zmm_q, zmm_q);                      // |w| <= 32
        vpermd(zmm_sc, zmm_idx[c], zmm_sc16);
        vpermd(zmm_sc255, zmm_idx[c], zmm_sc16_255);
        for (int t = 0; t < group; ++t) {  // v = 255·hi + lo: two byte dots, one int32 sum
          emit_plane_dot(t, ActQ16K::hi + 64 * c, zmm_sc255, c == 0);
          emit_plane_dot(t, ActQ16K::lo + 64 * c, zmm_sc, false);
        }
      }
    }
    for (int t = 0; t < group; ++t) {
      vcvtdq2ps(zmm_f, zmm_isum[t]);
      vmulps(zmm_f, zmm_f, act_b(t, 0));  // × d_a
      vfmadd231ps(zmm_acc[t], zmm_f, zmm_d);
    }
  }

  // out[t][r] for the `group` tokens starting at reg_act_tok / reg_out_t.
  void emit_group(int group) override {
    emit_superblock_group(group, n_blocks_, Q6KBlock::bytes, ActQ16K::bytes, reg_blocks, zmm_acc,
                          ymm_t0, xmm_t1, [&] { emit_superblock(group); });
  }

  // for r in [0, n_rows):                        // weight row stays in L1 across tokens
  //   for each group of G tokens (G = 4 while 4 are left, then 3, 2 or 1 once):
  //     acc[G] = 0
  //     for b in [0, n_blocks):                  // 256-element super-blocks
  //       prefetch w + distance; scales as [sc, 0], [255·sc, 0] word pairs; d  (once)
  //       for h < 2, p < 2:                      // chunk c = 2h + p, 64 elements
  //         q = nibble p of ql[64h..] | high bits (qh rotated) & 0x30          (once)
  //         w = q − 32: |w| and the mask of w < 0                              (once)
  //         sc = scales 4c + i/4 per dword i, and 255·sc                       (once)
  //         for g < G: isum[g] += 255·sc ⊙ dpbusd(|w|, sign(w)·a[g].hi)
  //                            +     sc ⊙ dpbusd(|w|, sign(w)·a[g].lo)
  //       for g < G: acc[g] += d·d_a · float(isum[g])
  //     out[g][r] = hsum(acc[g])
  void generate() override {
    preamble();
    emit_constants();
    emit_decode_loops(reg_rows);
    postamble();
  }

  int64_t n_blocks_;
};

}  // namespace

Expected<std::unique_ptr<GemvKernel>> create_gemv_q6_k_avx512(const GemvDesc& desc,
                                                              const Avx512Tuning& tuning) {
  if (desc.type != GGMLType::Q6_K || desc.k <= 0 || desc.k % 256 != 0) {
    return Error("q6_k_avx512: needs Q6_K rows of a positive multiple of 256 elements, got {}",
                 desc.to_string());
  }
  KTX_RETURN_IF_ERROR(tuning.validate().with_context(desc.to_string()));
  return create_gemv_jit<GemvQ6_KAvx512>(desc, tuning);
}

}  // namespace ktx::cpu
