// Generated AVX-512 VNNI GEMV for the 32-element legacy blocks read in place, Q8_0 (34 bytes:
// fp16 scale, 32 int8) and Q4_0 (18 bytes: fp16 scale, 16 bytes of nibbles, value = nibble - 8;
// low nibbles are elements 0..15, high nibbles 16..31), against q8_0 activations (ActBlockQ8_0:
// float scale, 32 int8). Q4_0 nibbles are widened to int8 first.
//
// vpdpbusd multiplies unsigned by signed bytes, and these weights are signed. The sign moves to
// the activation: |w| (vpabsb; -128 becomes the unsigned 128, still exact) times sign(w)·a
// (a negated under the mask of negative w, vpmovb2m + masked vpsubb; activations never hold
// -128, so the negation cannot wrap). The block's integer dot is exact; it is scaled by
// d_w·d_a in float. One block is 32 bytes, so the kernel runs on ymm registers (AVX-512 VL):
// the per-block float scaling would waste a zmm's upper half. Tokens go in groups of up to
// four sharing each weight block's decode; each token keeps two accumulators (even and odd
// blocks) so consecutive FMAs do not wait on each other. `unroll` is ignored (fixed at 2).
#include <cstddef>

#include "runtime/cpu/jit/gemv_avx512.h"
#include "runtime/cpu/jit/jit_kernel.h"

namespace ktx::cpu {
namespace {

using namespace Xbyak;
using namespace Xbyak::util;

class GemvLegacyAvx512 final : public JitKernel, public GemvKernel {
 public:
  GemvLegacyAvx512(const GemvDesc& desc, const Avx512Tuning& tuning)
      : q4_(desc.type == GGMLType::Q4_0), w_block_(q4_ ? 18 : 34), tuning_(tuning),
        n_blocks_(desc.k / 32) {}

  std::string name() const override {
    return fmt::format("gemv_{}_avx512", q4_ ? "q4_0" : "q8_0");
  }
  ActFormat act_format() const override { return ActFormat::q8_0; }
  void run(const GemvArgs& args) const override {
    getCode<void (*)(const GemvArgs*)>()(&args);
  }
  std::vector<uint8_t> code() const override {
    return {code_bytes(), code_bytes() + code_bytes_size()};
  }

 private:
  static constexpr int kABlock = static_cast<int>(sizeof(ActBlockQ8_0));
  static constexpr int kMaxGroup = 4;     // tokens sharing one pass over a weight row

  const Reg64 reg_args = rdi;     // const GemvArgs*
  const Reg64 reg_w_row = rsi;    // weight row r
  const Reg64 reg_w = rdx;        // current weight block (pair)
  const Reg64 reg_act_tok = rcx;  // first token of the group: activation row
  const Reg64 reg_act0 = r8;      // current activation block of tokens 0 (and 1 at +stride)
  const Reg64 reg_act2 = rbp;     // current activation block of tokens 2 (and 3 at +stride)
  const Reg64 reg_astride = r11;  // bytes between tokens' activation rows
  const Reg64 reg_out = r9;       // &out[0][r]
  const Reg64 reg_out_t = r10;    // &out[t][r] of the group's first token
  const Reg64 reg_toks = rbx;     // tokens left
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
  const Ymm ymm_a[kMaxGroup] = {ymm17, ymm18, ymm19, ymm20};    // sign(w)·a
  const Ymm ymm_dot[kMaxGroup] = {ymm21, ymm22, ymm23, ymm24};  // int32 dot, then float
  const Ymm ymm_dw = ymm25;       // d_w, broadcast
  const Xmm xmm_dw = xmm25;
  const Ymm ymm_zero = ymm26;
  const Opmask k_neg = k1;        // bytes where w < 0

  Address act(int t, int off) const {
    const Reg64 base = t < 2 ? reg_act0 : reg_act2;
    return (t & 1) ? ptr[base + reg_astride + off] : ptr[base + off];
  }
  Address act_b(int t, int off) const {
    const Reg64 base = t < 2 ? reg_act0 : reg_act2;
    return (t & 1) ? ptr_b[base + reg_astride + off] : ptr_b[base + off];
  }

  void emit_prefetch(const Address& a) {
    switch (tuning_.hint) {
      case PrefetchHint::none: return;
      case PrefetchHint::t0: prefetcht0(a); return;
      case PrefetchHint::t1: prefetcht1(a); return;
      case PrefetchHint::nta: prefetchnta(a); return;
    }
  }

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

  // acc[2t + u] += float(dot(w block, a[t] block)) · d_a · d_w for the group's tokens.
  void emit_block(int group, int u, int w_off, int a_off) {
    emit_load_w(w_off);
    vpmovb2m(k_neg, ymm_w);
    vpabsb(ymm_absw, ymm_w);
    vpbroadcastw(xmm_dw, word[reg_w + w_off]);
    vcvtph2ps(ymm_dw, xmm_dw);
    for (int t = 0; t < group; ++t) {
      vmovdqu8(ymm_a[t], act(t, a_off + 4));
      vpsubb(ymm_a[t] | k_neg, ymm_zero, ymm_a[t]);
      vpxord(ymm_dot[t], ymm_dot[t], ymm_dot[t]);
      vpdpbusd(ymm_dot[t], ymm_absw, ymm_a[t]);
      vcvtdq2ps(ymm_dot[t], ymm_dot[t]);
      vmulps(ymm_dot[t], ymm_dot[t], act_b(t, a_off));  // × d_a
      vfmadd231ps(ymm_acc[2 * t + u], ymm_dot[t], ymm_dw);
    }
  }

  // out[t][r] for the `group` tokens starting at reg_act_tok / reg_out_t.
  void emit_group(int group) {
    Label l_blk;
    mov(reg_w, reg_w_row);
    mov(reg_act0, reg_act_tok);
    if (group > 2) lea(reg_act2, ptr[reg_act_tok + reg_astride * 2]);
    for (int i = 0; i < 2 * group; ++i) vxorps(ymm_acc[i], ymm_acc[i], ymm_acc[i]);
    if (n_blocks_ >= 2) {
      mov(reg_blocks, n_blocks_ / 2);
      L(l_blk);
      emit_prefetch(ptr[reg_w + tuning_.prefetch_bytes]);  // a pair is 36 or 68 bytes
      if (!q4_) emit_prefetch(ptr[reg_w + tuning_.prefetch_bytes + 64]);
      emit_block(group, 0, 0, 0);
      emit_block(group, 1, w_block_, kABlock);
      add(reg_w, 2 * w_block_);
      add(reg_act0, 2 * kABlock);
      if (group > 2) add(reg_act2, 2 * kABlock);
      dec(reg_blocks);
      jnz(l_blk, T_NEAR);
    }
    if (n_blocks_ % 2) emit_block(group, 0, 0, 0);
    mov(rax, ptr[reg_args + offsetof(GemvArgs, out_stride)]);
    shl(rax, 2);
    mov(reg_act0, reg_out_t);           // free now: walks the group's output rows
    for (int t = 0; t < group; ++t) {
      vaddps(ymm_w, ymm_acc[2 * t], ymm_acc[2 * t + 1]);
      vextractf128(xmm_hi, ymm_w, 1);
      vaddps(xmm_w, xmm_w, xmm_hi);
      vhaddps(xmm_w, xmm_w, xmm_w);
      vhaddps(xmm_w, xmm_w, xmm_w);
      vmovss(ptr[reg_act0], xmm_w);
      if (t + 1 < group) add(reg_act0, rax);
    }
  }

  void emit_constants() {
    vpxord(ymm_zero, ymm_zero, ymm_zero);
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
  //         for g < G: acc[g][u] += float(dpbusd(|w|, sign(w)·a[g][b])) · d_a · d_w
  //     tail block (n_blocks odd, emitted straight) into acc[g][0]
  //     out[g][r] = hsum(acc[g][0] + acc[g][1])
  void generate() override {
    Label l_row, l_quad, l_rest, l_g[kMaxGroup], l_row_next, l_done;
    preamble();
    emit_constants();
    mov(reg_w_row, ptr[reg_args + offsetof(GemvArgs, w)]);
    mov(reg_out, ptr[reg_args + offsetof(GemvArgs, out)]);
    mov(reg_astride, ptr[reg_args + offsetof(GemvArgs, act_stride)]);
    mov(reg_rows, ptr[reg_args + offsetof(GemvArgs, n_rows)]);
    test(reg_rows, reg_rows);
    jle(l_done, T_NEAR);
    L(l_row);
    mov(reg_act_tok, ptr[reg_args + offsetof(GemvArgs, act)]);
    mov(reg_out_t, reg_out);
    mov(reg_toks, ptr[reg_args + offsetof(GemvArgs, n_tokens)]);
    L(l_quad);
    cmp(reg_toks, kMaxGroup);
    jl(l_rest, T_NEAR);
    emit_group(kMaxGroup);
    lea(reg_act_tok, ptr[reg_act_tok + reg_astride * 4]);
    mov(rax, ptr[reg_args + offsetof(GemvArgs, out_stride)]);
    shl(rax, 4);                        // 4 tokens × 4 bytes
    add(reg_out_t, rax);
    sub(reg_toks, kMaxGroup);
    jmp(l_quad, T_NEAR);
    L(l_rest);
    for (int g = kMaxGroup - 1; g >= 1; --g) {
      cmp(reg_toks, g);
      je(l_g[g], T_NEAR);
    }
    jmp(l_row_next, T_NEAR);
    for (int g = kMaxGroup - 1; g >= 1; --g) {
      L(l_g[g]);
      emit_group(g);
      jmp(l_row_next, T_NEAR);
    }
    L(l_row_next);
    add(reg_w_row, ptr[reg_args + offsetof(GemvArgs, w_stride)]);
    add(reg_out, 4);
    dec(reg_rows);
    jnz(l_row, T_NEAR);
    L(l_done);
    postamble();
  }

  bool q4_;       // Q4_0 (else Q8_0)
  int w_block_;   // bytes of a weight block
  Avx512Tuning tuning_;
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
  auto kernel = std::make_unique<GemvLegacyAvx512>(desc, tuning);
  KTX_RETURN_IF_ERROR(kernel->create(kernel->name()));
  return std::unique_ptr<GemvKernel>(std::move(kernel));
}

}  // namespace ktx::cpu
