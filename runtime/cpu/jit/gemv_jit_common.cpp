// The scaffolding shared by the generated GEMV kernels (see gemv_jit_common.h): the row loop,
// the token-group dispatch, horizontal sums, the K-quant scale unpacking and prefetches.
#include "runtime/cpu/jit/gemv_jit_common.h"

#include <bit>

namespace ktx::cpu {

using namespace Xbyak;
using namespace Xbyak::util;

void GemvJit::emit_row_loop(const Operand& rows, const Reg64* astride,
                            const std::function<void(const Label& row_next)>& body) {
  Label l_row, l_row_next, l_done;
  mov(reg_w_row, arg(offsetof(GemvArgs, w)));
  mov(reg_out, arg(offsetof(GemvArgs, out)));
  if (astride) mov(*astride, arg(offsetof(GemvArgs, act_stride)));
  if (rows.isREG()) {
    const Reg64& reg_rows = static_cast<const Reg64&>(rows);
    mov(reg_rows, arg(offsetof(GemvArgs, n_rows)));
    test(reg_rows, reg_rows);
    jle(l_done, T_NEAR);
  } else {
    mov(rax, arg(offsetof(GemvArgs, n_rows)));
    test(rax, rax);
    jle(l_done, T_NEAR);
    mov(static_cast<const Address&>(rows), rax);
  }
  L(l_row);
  mov(reg_act_tok, arg(offsetof(GemvArgs, act)));
  mov(reg_out_t, reg_out);
  mov(reg_toks, arg(offsetof(GemvArgs, n_tokens)));
  body(l_row_next);
  L(l_row_next);
  add(reg_w_row, arg(offsetof(GemvArgs, w_stride)));
  add(reg_out, 4);
  dec(rows);
  jnz(l_row, T_NEAR);
  L(l_done);
}

void GemvJit::emit_token_groups(int max_group, const Label& row_next, const Reg64* astride,
                                const std::function<void(int group)>& emit_group) {
  // max_group is a lea scale (1, 2, 4 or 8; Xbyak throws on others, which create() reports);
  // the output step is then a shift of 4·max_group bytes.
  Label l_full, l_rest;
  std::vector<Label> l_g(max_group);
  L(l_full);
  cmp(reg_toks, max_group);
  jl(l_rest, T_NEAR);
  emit_group(max_group);
  if (astride) {
    lea(reg_act_tok, ptr[reg_act_tok + *astride * max_group]);
  } else {
    mov(rax, arg(offsetof(GemvArgs, act_stride)));
    lea(reg_act_tok, ptr[reg_act_tok + rax * max_group]);
  }
  mov(rax, arg(offsetof(GemvArgs, out_stride)));
  shl(rax, std::countr_zero(static_cast<unsigned>(4 * max_group)));  // G tokens × 4 bytes
  add(reg_out_t, rax);
  sub(reg_toks, max_group);
  jmp(l_full, T_NEAR);
  L(l_rest);
  for (int g = max_group - 1; g >= 1; --g) {
    cmp(reg_toks, g);
    je(l_g[g], T_NEAR);
  }
  jmp(row_next, T_NEAR);
  for (int g = max_group - 1; g >= 1; --g) {
    L(l_g[g]);
    emit_group(g);
    jmp(row_next, T_NEAR);
  }
}

void GemvJit::emit_pair_group(int group, const Reg64 (&act)[2], int64_t n_blocks, int w_block,
                              int a_block, const Address& blocks_left,
                              const std::function<void()>& init,
                              const std::function<void()>& body,
                              const std::function<Xmm(int t)>& hsum) {
  Label l_blk;
  mov(reg_w, reg_w_row);
  mov(act[0], reg_act_tok);
  if (group > 1) {
    mov(rax, arg(offsetof(GemvArgs, act_stride)));
    lea(act[1], ptr[reg_act_tok + rax]);
  }
  init();
  mov(blocks_left, static_cast<uint32_t>(n_blocks));
  L(l_blk);
  body();
  add(reg_w, w_block);
  for (int t = 0; t < group; ++t) add(act[t], a_block);
  dec(blocks_left);
  jnz(l_blk, T_NEAR);
  mov(rax, arg(offsetof(GemvArgs, out_stride)));
  for (int t = 0; t < group; ++t) {
    const Xmm sum = hsum(t);
    if (t == 0) {
      vmovss(ptr[reg_out_t], sum);
    } else {
      vmovss(ptr[reg_out_t + rax * 4], sum);
    }
  }
}

void GemvJit::emit_hsum_ymm(const Ymm& v, const Xmm& tmp, const Xmm* minus) {
  const Xmm x(v.getIdx());
  vextractf128(tmp, v, 1);
  vaddps(x, x, tmp);
  if (minus) vsubps(x, x, *minus);
  vhaddps(x, x, x);
  vhaddps(x, x, x);
}

void GemvJit::emit_hsum_zmm(const Ymm& dst, const Zmm& src, const Xmm& tmp, const Xmm* minus) {
  vextractf64x4(dst, src, 1);
  vaddps(dst, dst, Ymm(src.getIdx()));
  emit_hsum_ymm(dst, tmp, minus);
}

void GemvJit::emit_unpack_scales_k4(const Reg32& sc_lo, const Reg32& mn_lo, const Reg32& sc_hi,
                                    const Reg32& mn_hi) {
  constexpr uint32_t km1 = 0x3f3f3f3f, km2 = 0x0f0f0f0f, km3 = 0x03030303;
  mov(sc_lo, dword[reg_w + 4]);
  mov(mn_lo, dword[reg_w + 8]);
  mov(sc_hi, dword[reg_w + 12]);
  mov(eax, sc_hi);                    // mins 4..7 = (q8..11 >> 4) | ((q4..7 >> 6) << 4)
  shr(eax, 4);
  and_(eax, km2);
  mov(mn_hi, mn_lo);
  shr(mn_hi, 6);
  and_(mn_hi, km3);
  shl(mn_hi, 4);
  or_(mn_hi, eax);
  and_(mn_lo, km1);                   // mins 0..3 = q4..7 & 63
  mov(eax, sc_lo);                    // scales 4..7 = (q8..11 & 15) | ((q0..3 >> 6) << 4)
  shr(eax, 6);
  and_(eax, km3);
  shl(eax, 4);
  and_(sc_hi, km2);
  or_(sc_hi, eax);
  and_(sc_lo, km1);                   // scales 0..3 = q0..3 & 63
}

void GemvJit::emit_prefetch(PrefetchHint hint, const Address& a) {
  switch (hint) {
    case PrefetchHint::none: return;
    case PrefetchHint::t0: prefetcht0(a); return;
    case PrefetchHint::t1: prefetcht1(a); return;
    case PrefetchHint::nta: prefetchnta(a); return;
  }
}

void GemvAvx512Jit::emit_decode_loops(const Operand& rows) {
  emit_row_loop(rows, &reg_astride, [&](const Label& row_next) {
    emit_token_groups(kMaxGroup, row_next, &reg_astride, [&](int g) { emit_group(g); });
  });
}

void GemvAvx512Jit::emit_group_pointers(int group) {
  mov(reg_w, reg_w_row);
  mov(reg_act0, reg_act_tok);
  if (group > 2) lea(reg_act2, ptr[reg_act_tok + reg_astride * 2]);
}

void GemvAvx512Jit::emit_advance_act(int group, int bytes) {
  add(reg_act0, bytes);
  if (group > 2) add(reg_act2, bytes);
}

void GemvAvx512Jit::emit_superblock_group(int group, int64_t n_blocks, int w_block,
                                          int a_block, const Operand& blocks_left,
                                          const Zmm* acc, const Ymm& ymm_tmp,
                                          const Xmm& xmm_tmp,
                                          const std::function<void()>& body) {
  Label l_blk;
  emit_group_pointers(group);
  for (int t = 0; t < group; ++t) vpxord(acc[t], acc[t], acc[t]);
  mov(blocks_left, static_cast<uint32_t>(n_blocks));
  L(l_blk);
  body();
  add(reg_w, w_block);
  emit_advance_act(group, a_block);
  dec(blocks_left);
  jnz(l_blk, T_NEAR);
  emit_group_stores(group, [&](int t) {
    emit_hsum_zmm(ymm_tmp, acc[t], xmm_tmp);
    return Xmm(ymm_tmp.getIdx());
  });
}

void GemvAvx512Jit::emit_group_stores(int group, const std::function<Xmm(int t)>& hsum) {
  mov(rax, arg(offsetof(GemvArgs, out_stride)));
  shl(rax, 2);
  mov(reg_act0, reg_out_t);
  for (int t = 0; t < group; ++t) {
    const Xmm sum = hsum(t);
    vmovss(ptr[reg_act0], sum);
    if (t + 1 < group) add(reg_act0, rax);
  }
}

}  // namespace ktx::cpu
