// Generated AVX2 GEMV for the 32-element legacy blocks read in place, Q8_0 (34 bytes: fp16
// scale, 32 int8) and Q4_0 (18 bytes: fp16 scale, 16 bytes of nibbles, value = nibble - 8;
// low nibbles are elements 0..15, high nibbles 16..31), against int16-grade activations
// (ActBlockQ16_0: float scale, hi and lo int8 planes, v = 255·hi + lo). Q4_0 nibbles are
// widened to int8 first. Each block's integer dot product is exact: |w| (unsigned) times
// sign(w)·a (signed) through vpmaddubsw, once per plane; neither plane holds -128, so no pair
// sum overflows int16 (2·128·127 < 2^15). vpmaddwd sums the hi pairs against 255 and the lo
// pairs against 1, so the dword sum is Σ w·v exactly (|Σ| <= 32·128·32512 < 2^31). The block
// sum is then scaled by d_w·d_a in float. `unroll` blocks run per iteration into independent
// accumulators to hide the FMA latency; the K tail (blocks % unroll) is emitted straight.
#include <cstddef>

#include "runtime/cpu/jit/gemv_jit_common.h"

namespace ktx::cpu {
namespace {

using namespace Xbyak;
using namespace Xbyak::util;

class GemvLegacyAvx2 final : public GemvJit {
 public:
  explicit GemvLegacyAvx2(const GemvDesc& desc)
      : q4_(desc.type == GGMLType::Q4_0), w_block_(q4_ ? 18 : 34), n_blocks_(desc.k / 32),
        unroll_(std::clamp(desc.unroll, 1, 4)) {}

  std::string name() const override {
    return fmt::format("gemv_{}_avx2_u{}", q4_ ? "q4_0" : "q8_0", unroll_);
  }
  ActFormat act_format() const override { return ActFormat::q16_0; }

 private:
  static constexpr int kABlock = static_cast<int>(sizeof(ActBlockQ16_0));
  static constexpr int kActHi = static_cast<int>(offsetof(ActBlockQ16_0, hi));
  static constexpr int kActLo = static_cast<int>(offsetof(ActBlockQ16_0, lo));

  // reg_args, reg_w_row, reg_w, reg_act_tok, reg_out, reg_out_t, reg_toks: see GemvJit.
  const Reg64 reg_act = r8;       // current activation block
  const Reg64 reg_rows = r11;     // rows left
  const Reg64 reg_blocks = rbp;   // block iterations left
  const Ymm ymm_acc[4] = {ymm0, ymm1, ymm2, ymm3};  // one accumulator per unrolled block
  const Ymm ymm_w = ymm8;         // weights, then products
  const Ymm ymm_a = ymm9;         // hi plane times sign(w)
  const Ymm ymm_a_lo = ymm4;      // lo plane times sign(w)
  const Ymm ymm_p = ymm5;         // hi products
  const Ymm ymm_c255 = ymm6;      // int16 255s for vpmaddwd (v = 255·hi + lo)
  const Xmm xmm_s = xmm10;        // d_w * d_a
  const Ymm ymm_s = ymm10;
  const Ymm ymm_ones = ymm15;     // int16 ones for vpmaddwd
  const Xmm xmm_tmp = xmm11;
  const Ymm ymm_mask = ymm14;     // Q4_0: 0x0f bytes
  const Ymm ymm_eight = ymm13;    // Q4_0: 8 in every byte
  const Xmm xmm_w = xmm8;
  const Xmm xmm_hi = xmm12;       // Q4_0: high nibbles

  // Q4_0: the 16 bytes at w_off+2 as 32 int8 values (nibble - 8), in ymm_w.
  void emit_widen_q4_0(int w_off) {
    vmovdqu(xmm_w, ptr[reg_w + w_off + 2]);
    vpsrlw(xmm_hi, xmm_w, 4);
    vinserti128(ymm_w, ymm_w, xmm_hi, 1);
    vpand(ymm_w, ymm_w, ymm_mask);
    vpsubb(ymm_w, ymm_w, ymm_eight);
  }

  // acc[u] += float(dot(w block, a block)) * d_w * d_a, blocks at the given byte offsets.
  void emit_block(int u, int w_off, int a_off) {
    if (q4_) {
      emit_widen_q4_0(w_off);
    } else {
      vmovdqu(ymm_w, ptr[reg_w + w_off + 2]);
    }
    vmovdqu(ymm_a, ptr[reg_act + a_off + kActHi]);
    vmovdqu(ymm_a_lo, ptr[reg_act + a_off + kActLo]);
    vpsignb(ymm_a, ymm_a, ymm_w);
    vpsignb(ymm_a_lo, ymm_a_lo, ymm_w);
    vpabsb(ymm_w, ymm_w);
    vpmaddubsw(ymm_p, ymm_w, ymm_a);
    vpmaddwd(ymm_p, ymm_p, ymm_c255);
    vpmaddubsw(ymm_w, ymm_w, ymm_a_lo);
    vpmaddwd(ymm_w, ymm_w, ymm_ones);
    vpaddd(ymm_w, ymm_w, ymm_p);
    vcvtdq2ps(ymm_w, ymm_w);
    movzx(eax, word[reg_w + w_off]);
    vmovd(xmm_s, eax);
    vcvtph2ps(xmm_s, xmm_s);
    vmulss(xmm_s, xmm_s, dword[reg_act + a_off]);
    vbroadcastss(ymm_s, xmm_s);
    vfmadd231ps(ymm_acc[u], ymm_w, ymm_s);
  }

  void emit_constants() {
    mov(eax, 0x00010001);
    vmovd(xmm_tmp, eax);
    vpbroadcastd(ymm_ones, xmm_tmp);
    mov(eax, 0x00ff00ff);
    vmovd(xmm_tmp, eax);
    vpbroadcastd(ymm_c255, xmm_tmp);
    if (!q4_) return;
    mov(eax, 0x0f0f0f0f);
    vmovd(xmm_tmp, eax);
    vpbroadcastd(ymm_mask, xmm_tmp);
    mov(eax, 0x08080808);
    vmovd(xmm_tmp, eax);
    vpbroadcastd(ymm_eight, xmm_tmp);
  }

  // out[t][r] for the token at reg_act_tok / reg_out_t.
  void emit_token() {
    Label l_blk;
    mov(reg_w, reg_w_row);
    mov(reg_act, reg_act_tok);
    for (int u = 0; u < unroll_; ++u) vxorps(ymm_acc[u], ymm_acc[u], ymm_acc[u]);
    const int64_t iters = n_blocks_ / unroll_;
    if (iters > 0) {
      mov(reg_blocks, iters);
      L(l_blk);
      for (int u = 0; u < unroll_; ++u) emit_block(u, u * w_block_, u * kABlock);
      add(reg_w, unroll_ * w_block_);
      add(reg_act, unroll_ * kABlock);
      dec(reg_blocks);
      jnz(l_blk, T_NEAR);
    }
    for (int b = 0; b < n_blocks_ % unroll_; ++b) emit_block(b, b * w_block_, b * kABlock);
    for (int u = 1; u < unroll_; ++u) vaddps(ymm_acc[0], ymm_acc[0], ymm_acc[u]);
    emit_hsum_ymm(ymm_acc[0], xmm_tmp);
    vmovss(ptr[reg_out_t], Xmm(ymm_acc[0].getIdx()));
  }

  // for r in [0, n_rows):                        // weight row stays in L1 across tokens
  //   for t in [0, n_tokens):
  //     acc[0..U) = 0
  //     for i in [0, n_blocks / U):              // U = unroll
  //       for u in [0, U): acc[u] += (255·dot(w, hi) + dot(w, lo))[r][t][i*U+u] * d_w * d_a
  //     for b in tail blocks (n_blocks % U, emitted straight): acc[b] += ...
  //     out[t][r] = hsum(acc[0] + ... + acc[U-1])
  void generate() override {
    preamble();
    emit_constants();
    emit_row_loop(reg_rows, nullptr, [&](const Label& row_next) {
      Label l_tok;
      test(reg_toks, reg_toks);
      jle(row_next, T_NEAR);
      L(l_tok);
      emit_token();
      add(reg_act_tok, arg(offsetof(GemvArgs, act_stride)));
      mov(rax, arg(offsetof(GemvArgs, out_stride)));
      lea(reg_out_t, ptr[reg_out_t + rax * 4]);
      dec(reg_toks);
      jnz(l_tok, T_NEAR);
    });
    postamble();
  }

  bool q4_;       // Q4_0 (else Q8_0)
  int w_block_;   // bytes of a weight block
  int64_t n_blocks_;
  int unroll_;
};

}  // namespace

Expected<std::unique_ptr<GemvKernel>> create_gemv_legacy_avx2(const GemvDesc& desc) {
  if ((desc.type != GGMLType::Q8_0 && desc.type != GGMLType::Q4_0) || desc.k <= 0 ||
      desc.k % 32 != 0) {
    return Error("legacy_avx2: needs Q8_0 or Q4_0 rows of a positive multiple of 32 elements, "
                 "got {}", desc.to_string());
  }
  return create_gemv_jit<GemvLegacyAvx2>(desc);
}

}  // namespace ktx::cpu
