// Generated AVX2 GEMV for Q4_K and Q5_K weights read in place (Q4_K: 144-byte GGUF
// super-blocks, fp16 d and dmin, twelve bytes of packed 6-bit scales/mins, 128 bytes of
// nibbles; Q5_K: 176 bytes, the same with 32 bytes of fifth bits qh before the nibbles) against
// int16-grade activations split into int8 planes (ActBlockQ16_K: v = 255·hi + lo). Per
// super-block of 256 elements:
//   dot = d·d_a · Σ_s sc_s · Σ_{i∈s} q_i·v_i  −  dmin·d_a · Σ_s m_s · bsum32_s
// The level × plane products are exact in int16 pairs (31·127·2 < 2^15). vpmaddwd scales the
// hi pairs by 255·sc_s (<= 16065, an int16) and the lo pairs by sc_s, so the int32 sum is
// Σ sc·q·v exactly: a dword lane gathers two pair sums (<= 2·31·127) per 32-element step and
// plane, |Σ| <= 8·2·(2·31·127)·(16065 + 63) ≈ 2.03e9 < 2^31 for Q5_K (Q4_K: 9.8e8). Only
// the two super-block scalings are float; the min term multiplies the int32 bsums by the mins
// (vpmulld, <= 63·2^20). The scales and mins are unpacked with a few 32-bit integer
// operations (the QUANTS.md packing) and parked in stack slots (sc and 255·sc), from where
// each sub-block's scale is broadcast. Q5_K: qh byte l holds the fifth bit of element 64j+l in
// bit 2j and of 64j+32+l in bit 2j+1; a word shift brings it to bit 4 (the bits a byte
// receives from its neighbour land away from bit 4) and the 0x10 mask (a constant after the
// code: no register is left) keeps it. Tokens go in pairs: the scales and levels of a
// super-block are decoded once and used by both.
#include <cstddef>

#include "runtime/cpu/jit/gemv_jit_common.h"

namespace ktx::cpu {
namespace {

using namespace Xbyak;
using namespace Xbyak::util;

class GemvQ4_KAvx2 final : public GemvJit {
 public:
  explicit GemvQ4_KAvx2(const GemvDesc& desc)
      : q5_(desc.type == GGMLType::Q5_K), n_blocks_(desc.k / 256) {}

  std::string name() const override { return q5_ ? "gemv_q5_k_avx2" : "gemv_q4_k_avx2"; }
  ActFormat act_format() const override { return ActFormat::q16_k; }

 private:
  static constexpr int kFrame = 64;          // stack locals below the saved registers
  static constexpr int kScaleSlot = 0;       // [rsp + 0, 16): the 8 scales as int16
  static constexpr int kBlocksLeft = 16;     // [rsp + 16]: super-blocks left (no GPR left)
  static constexpr int kScale255Slot = 32;   // [rsp + 32, 48): 255 · the 8 scales as int16
  static constexpr int kMaxGroup = 2;        // tokens sharing one pass over a weight row

  // reg_args, reg_w_row, reg_w, reg_act_tok, reg_out, reg_out_t, reg_toks: see GemvJit.
  const Reg64 reg_act[kMaxGroup] = {r8, rbp};  // current activation block of each token
  const Reg64 reg_rows = r11;     // rows left
  const Reg32 reg_sc_lo = r12d;   // scales 0..3, one per byte
  const Reg32 reg_mn_lo = r13d;   // mins 0..3
  const Reg32 reg_sc_hi = r14d;   // scales 4..7
  const Reg32 reg_mn_hi = r15d;   // mins 4..7
  const Ymm ymm_acc[kMaxGroup] = {ymm0, ymm1};      // float: Σ d·d_a·(scaled integer dots)
  const Xmm xmm_acc_min[kMaxGroup] = {xmm2, xmm3};  // float: Σ dmin·d_a·(mins · bsums)
  const Ymm ymm_isum[kMaxGroup] = {ymm4, ymm5};     // int32 dot of one super-block
  const Ymm ymm_lo = ymm6;        // low nibbles (sub-block 2j), shared by the group
  const Ymm ymm_hi = ymm7;        // high nibbles (sub-block 2j+1)
  const Ymm ymm_sc = ymm8;        // one scale, broadcast
  const Ymm ymm_p = ymm9;         // products
  const Xmm xmm_p = xmm9;
  const Ymm ymm_mins = ymm10;     // 8 mins as int32
  const Xmm xmm_dd = xmm11;       // [d, dmin] as float
  const Xmm xmm_t = xmm12;        // per-token temporaries
  const Xmm xmm_s = xmm13;
  const Ymm ymm_s = ymm13;
  const Ymm ymm_sc255 = ymm13;    // 255 · one scale, broadcast (inside the chunk loop only)
  const Ymm ymm_t = ymm12;
  const Xmm xmm_c255 = xmm14;     // int16 255s
  const Ymm ymm_mask = ymm15;     // 0x0f bytes

  // Unpack the 6-bit scales and mins of the block at reg_w (see get_scale_min_k4).
  void emit_unpack_scales() {
    emit_unpack_scales_k4(reg_sc_lo, reg_mn_lo, reg_sc_hi, reg_mn_hi);
    vmovd(xmm_t, reg_sc_lo);
    vpinsrd(xmm_t, xmm_t, reg_sc_hi, 1);
    vpmovzxbw(xmm_t, xmm_t);
    vmovdqu(ptr[rsp + kScaleSlot], xmm_t);
    vpmullw(xmm_t, xmm_t, xmm_c255);
    vmovdqu(ptr[rsp + kScale255Slot], xmm_t);
    vmovd(xmm_t, reg_mn_lo);
    vpinsrd(xmm_t, xmm_t, reg_mn_hi, 1);
    vpmovzxbd(ymm_mins, xmm_t);
  }

  // Q5_K: levels |= (bit `bit` of each qh byte) << 4. Clobbers ymm_p (free while decoding).
  void emit_fifth_bit(const Ymm& levels, int bit) {
    vmovdqu(ymm_p, ptr[reg_w + Q45KBlock::qh]);
    if (bit < 4) {
      vpsllw(ymm_p, ymm_p, 4 - bit);
    } else if (bit > 4) {
      vpsrlw(ymm_p, ymm_p, bit - 4);
    }
    vpand(ymm_p, ymm_p, ptr[rip + l_bit4_]);
    vpor(levels, levels, ymm_p);
  }

  // One super-block for `group` tokens: scales and nibbles decoded once, used by each token.
  void emit_superblock(int group) {
    emit_unpack_scales();
    vmovd(xmm_dd, dword[reg_w]);        // fp16 d, dmin -> float
    vcvtph2ps(xmm_dd, xmm_dd);
    for (int t = 0; t < group; ++t) vpxor(ymm_isum[t], ymm_isum[t], ymm_isum[t]);
    for (int j = 0; j < 4; ++j) {       // 64 elements: sub-blocks 2j (low), 2j+1 (high)
      vmovdqu(ymm_hi, ptr[reg_w + Q45KBlock::qs(q5_) + 32 * j]);
      vpand(ymm_lo, ymm_hi, ymm_mask);
      vpsrlw(ymm_hi, ymm_hi, 4);
      vpand(ymm_hi, ymm_hi, ymm_mask);
      if (q5_) {
        emit_fifth_bit(ymm_lo, 2 * j);
        emit_fifth_bit(ymm_hi, 2 * j + 1);
      }
      for (int half = 0; half < 2; ++half) {
        vpbroadcastw(ymm_sc, word[rsp + kScaleSlot + 4 * j + 2 * half]);
        vpbroadcastw(ymm_sc255, word[rsp + kScale255Slot + 4 * j + 2 * half]);
        const Ymm& q = half ? ymm_hi : ymm_lo;
        const int off = 64 * j + 32 * half;
        for (int t = 0; t < group; ++t) {
          vpmaddubsw(ymm_p, q, ptr[reg_act[t] + ActQ16K::hi + off]);
          vpmaddwd(ymm_p, ymm_p, ymm_sc255);
          vpmaddubsw(ymm_t, q, ptr[reg_act[t] + ActQ16K::lo + off]);
          vpmaddwd(ymm_t, ymm_t, ymm_sc);
          vpaddd(ymm_p, ymm_p, ymm_t);
          vpaddd(ymm_isum[t], ymm_isum[t], ymm_p);
        }
      }
    }
    for (int t = 0; t < group; ++t) {
      vbroadcastss(xmm_s, dword[reg_act[t]]);
      vmulps(xmm_s, xmm_dd, xmm_s);     // [d·d_a, dmin·d_a]
      vpmulld(ymm_t, ymm_mins, ptr[reg_act[t] + ActQ16K::bsum]);  // 8 products, folded to 4
      vextracti128(xmm_p, ymm_t, 1);
      vpaddd(xmm_t, xmm_t, xmm_p);
      vcvtdq2ps(xmm_t, xmm_t);
      vmovshdup(xmm_p, xmm_s);
      vbroadcastss(xmm_p, xmm_p);
      vfmadd231ps(xmm_acc_min[t], xmm_t, xmm_p);
      vbroadcastss(ymm_s, xmm_s);
      vcvtdq2ps(ymm_isum[t], ymm_isum[t]);
      vfmadd231ps(ymm_acc[t], ymm_isum[t], ymm_s);
    }
  }

  // out[t][r] for the `group` tokens starting at reg_act_tok / reg_out_t.
  void emit_group(int group) {
    auto init = [&] {
      for (int t = 0; t < group; ++t) {
        vxorps(ymm_acc[t], ymm_acc[t], ymm_acc[t]);
        vxorps(xmm_acc_min[t], xmm_acc_min[t], xmm_acc_min[t]);
      }
    };
    emit_pair_group(group, reg_act, n_blocks_, Q45KBlock::bytes(q5_), ActQ16K::bytes,
                    qword[rsp + kBlocksLeft], init, [&] { emit_superblock(group); },
                    [&](int t) {
                      emit_hsum_ymm(ymm_acc[t], xmm_p, &xmm_acc_min[t]);
                      return Xmm(ymm_acc[t].getIdx());
                    });
  }

  // for r in [0, n_rows):                        // weight row stays in L1 across tokens
  //   for each group of G tokens (G = 2, then 1 for an odd last token):
  //     acc[G] = 0, acc_min[G] = 0
  //     for b in [0, n_blocks):                  // 256-element super-blocks
  //       unpack scales/mins of w[r][b]; split its nibbles   (once for the group)
  //       for g < G:
  //         acc_min[g] += dmin·d_a · (mins · a[g][b].bsum32)
  //         acc[g]     += d·d_a · Σ_{j<4} (sc[2j]·(lo(q_j)·v) + sc[2j+1]·(hi(q_j)·v)),
  //                        each q·v as 255·(q·hi) + q·lo
  //     out[g][r] = hsum(acc[g]) − hsum(acc_min[g])
  void generate() override {
    preamble();
    sub(rsp, kFrame);
    mov(eax, 0x0f0f0f0f);
    vmovd(xmm_t, eax);
    vpbroadcastd(ymm_mask, xmm_t);
    mov(eax, 0x00ff00ff);
    vmovd(xmm_t, eax);
    vpbroadcastd(xmm_c255, xmm_t);
    emit_row_loop(reg_rows, nullptr, [&](const Label& row_next) {
      emit_token_groups(kMaxGroup, row_next, nullptr, [&](int g) { emit_group(g); });
    });
    add(rsp, kFrame);
    postamble();
    align(32);
    L(l_bit4_);                       // 0x10 in every byte (Q5_K fifth bits)
    for (int i = 0; i < 8; ++i) dd(0x10101010);
  }

  Label l_bit4_;
  bool q5_;             // Q5_K (else Q4_K)
  int64_t n_blocks_;
};

}  // namespace

Expected<std::unique_ptr<GemvKernel>> create_gemv_q4_k_avx2(const GemvDesc& desc) {
  if ((desc.type != GGMLType::Q4_K && desc.type != GGMLType::Q5_K) || desc.k <= 0 ||
      desc.k % 256 != 0) {
    return Error("q4_k_avx2: needs Q4_K or Q5_K rows of a positive multiple of 256 elements, "
                 "got {}", desc.to_string());
  }
  return create_gemv_jit<GemvQ4_KAvx2>(desc);
}

}  // namespace ktx::cpu
