// Generated AVX2 GEMV for Q4_K weights read in place (144-byte GGUF super-blocks: fp16 d and
// dmin, twelve bytes of packed 6-bit scales/mins, 128 bytes of nibbles) against Q8_K-style
// activations (ActBlockQ8_K). Per super-block of 256 elements:
//   dot = d·d_a · Σ_s sc_s · Σ_{i∈s} q_i·a_i  −  dmin·d_a · Σ_s m_s · bsum32_s
// The nibble × int8 products are exact in int16 (15·127·2 < 2^15), scaled by the 6-bit sub-block
// scales through vpmaddwd (int32, exact); only the two super-block scalings are in float. The
// scales and mins are unpacked with four 32-bit integer operations (the QUANTS.md packing) and
// parked in the red zone below rsp, from where each sub-block's scale is broadcast.
#include <cstddef>

#include "runtime/cpu/jit/gemv.h"
#include "runtime/cpu/jit/jit_kernel.h"

namespace ktx::cpu {
namespace {

using namespace Xbyak;
using namespace Xbyak::util;

class GemvQ4_KAvx2 final : public JitKernel, public GemvKernel {
 public:
  explicit GemvQ4_KAvx2(const GemvDesc& desc) : n_blocks_(desc.k / 256) {}

  std::string name() const override { return "gemv_q4_k_avx2"; }
  ActFormat act_format() const override { return ActFormat::q8_k; }
  void run(const GemvArgs& args) const override {
    getCode<void (*)(const GemvArgs*)>()(&args);
  }
  std::vector<uint8_t> code() const override {
    return {code_bytes(), code_bytes() + code_bytes_size()};
  }

 private:
  static constexpr int kWBlock = 144;  // GGUF block_q4_K
  static constexpr int kABlock = static_cast<int>(sizeof(ActBlockQ8_K));
  static constexpr int kActBsum = static_cast<int>(offsetof(ActBlockQ8_K, bsum32));
  static constexpr int kActQs = static_cast<int>(offsetof(ActBlockQ8_K, qs));
  static constexpr int kScaleSlot = -32;  // red-zone slot for the 8 int16 scales

  const Reg64 reg_args = rdi;     // const GemvArgs*
  const Reg64 reg_w_row = rsi;    // weight row r
  const Reg64 reg_w = rdx;        // current weight super-block
  const Reg64 reg_act_tok = rcx;  // token t's activation row
  const Reg64 reg_act = r8;       // current activation block
  const Reg64 reg_out = r9;       // &out[0][r]
  const Reg64 reg_out_t = r10;    // &out[t][r]
  const Reg64 reg_rows = r11;     // rows left
  const Reg64 reg_toks = rbx;     // tokens left
  const Reg64 reg_blocks = rbp;   // super-blocks left
  const Reg32 reg_sc_lo = r12d;   // scales 0..3, one per byte
  const Reg32 reg_mn_lo = r13d;   // mins 0..3
  const Reg32 reg_sc_hi = r14d;   // scales 4..7
  const Reg32 reg_mn_hi = r15d;   // mins 4..7
  const Ymm ymm_acc = ymm0;       // float: Σ d·d_a·(scaled integer dots)
  const Xmm xmm_acc_min = xmm1;   // float: Σ dmin·d_a·(mins · bsums)
  const Ymm ymm_isum = ymm2;      // int32 dot of one super-block
  const Ymm ymm_q = ymm3;         // 64 nibbles
  const Ymm ymm_lo = ymm4;        // low nibbles, then products
  const Ymm ymm_hi = ymm5;        // high nibbles, then products
  const Ymm ymm_sc = ymm6;        // one scale, broadcast
  const Xmm xmm_t = xmm7;         // scales / mins unpacking
  const Xmm xmm_d = xmm8;         // [d·d_a, dmin·d_a]
  const Ymm ymm_d = ymm8;
  const Xmm xmm_dmin = xmm9;
  const Ymm ymm_mask = ymm15;     // 0x0f bytes

  // Unpack the 6-bit scales and mins of the block at reg_w (see get_scale_min_k4).
  void emit_unpack_scales() {
    constexpr uint32_t km1 = 0x3f3f3f3f, km2 = 0x0f0f0f0f, km3 = 0x03030303;
    mov(reg_sc_lo, dword[reg_w + 4]);
    mov(reg_mn_lo, dword[reg_w + 8]);
    mov(reg_sc_hi, dword[reg_w + 12]);
    mov(eax, reg_sc_hi);                // mins 4..7 = (q8..11 >> 4) | ((q4..7 >> 6) << 4)
    shr(eax, 4);
    and_(eax, km2);
    mov(reg_mn_hi, reg_mn_lo);
    shr(reg_mn_hi, 6);
    and_(reg_mn_hi, km3);
    shl(reg_mn_hi, 4);
    or_(reg_mn_hi, eax);
    and_(reg_mn_lo, km1);               // mins 0..3 = q4..7 & 63
    mov(eax, reg_sc_lo);                // scales 4..7 = (q8..11 & 15) | ((q0..3 >> 6) << 4)
    shr(eax, 6);
    and_(eax, km3);
    shl(eax, 4);
    and_(reg_sc_hi, km2);
    or_(reg_sc_hi, eax);
    and_(reg_sc_lo, km1);               // scales 0..3 = q0..3 & 63
  }

  // One super-block: ymm_acc and xmm_acc_min updated, pointers left in place.
  void emit_superblock() {
    emit_unpack_scales();
    vmovd(xmm_t, reg_sc_lo);
    vpinsrd(xmm_t, xmm_t, reg_sc_hi, 1);
    vpmovzxbw(xmm_t, xmm_t);
    vmovdqu(ptr[rsp + kScaleSlot], xmm_t);
    vmovd(xmm_t, reg_mn_lo);            // min term: mins (int16) · bsum32 (int16)
    vpinsrd(xmm_t, xmm_t, reg_mn_hi, 1);
    vpmovzxbw(xmm_t, xmm_t);
    vpmaddwd(xmm_t, xmm_t, ptr[reg_act + kActBsum]);
    vcvtdq2ps(xmm_t, xmm_t);
    vmovd(xmm_d, dword[reg_w]);         // fp16 d, dmin -> float, times d_a
    vcvtph2ps(xmm_d, xmm_d);
    vbroadcastss(xmm_dmin, dword[reg_act]);
    vmulps(xmm_d, xmm_d, xmm_dmin);
    vmovshdup(xmm_dmin, xmm_d);
    vbroadcastss(xmm_dmin, xmm_dmin);
    vfmadd231ps(xmm_acc_min, xmm_t, xmm_dmin);
    vbroadcastss(ymm_d, xmm_d);
    vpxor(ymm_isum, ymm_isum, ymm_isum);
    for (int j = 0; j < 4; ++j) {       // 64 elements: sub-blocks 2j (low), 2j+1 (high)
      vmovdqu(ymm_q, ptr[reg_w + 16 + 32 * j]);
      vpand(ymm_lo, ymm_q, ymm_mask);
      vpsrlw(ymm_hi, ymm_q, 4);
      vpand(ymm_hi, ymm_hi, ymm_mask);
      vpmaddubsw(ymm_lo, ymm_lo, ptr[reg_act + kActQs + 64 * j]);
      vpmaddubsw(ymm_hi, ymm_hi, ptr[reg_act + kActQs + 64 * j + 32]);
      vpbroadcastw(ymm_sc, word[rsp + kScaleSlot + 4 * j]);
      vpmaddwd(ymm_lo, ymm_lo, ymm_sc);
      vpbroadcastw(ymm_sc, word[rsp + kScaleSlot + 4 * j + 2]);
      vpmaddwd(ymm_hi, ymm_hi, ymm_sc);
      vpaddd(ymm_isum, ymm_isum, ymm_lo);
      vpaddd(ymm_isum, ymm_isum, ymm_hi);
    }
    vcvtdq2ps(ymm_isum, ymm_isum);
    vfmadd231ps(ymm_acc, ymm_isum, ymm_d);
  }

  // for r in [0, n_rows):                        // weight row stays in L1 across tokens
  //   for t in [0, n_tokens):
  //     acc = 0, acc_min = 0
  //     for b in [0, n_blocks):                  // 256-element super-blocks
  //       unpack scales/mins of w[r][b]
  //       acc_min += dmin·d_a · (mins · a[t][b].bsum32)
  //       acc     += d·d_a · Σ_{j<4} (sc[2j]·(lo(q_j)·a) + sc[2j+1]·(hi(q_j)·a))
  //     out[t][r] = hsum(acc) − hsum(acc_min)
  void generate() override {
    Label l_row, l_tok, l_blk, l_row_next, l_done;
    preamble();
    mov(reg_w_row, ptr[reg_args + offsetof(GemvArgs, w)]);
    mov(reg_out, ptr[reg_args + offsetof(GemvArgs, out)]);
    mov(reg_rows, ptr[reg_args + offsetof(GemvArgs, n_rows)]);
    mov(eax, 0x0f0f0f0f);
    vmovd(xmm_t, eax);
    vpbroadcastd(ymm_mask, xmm_t);
    test(reg_rows, reg_rows);
    jle(l_done, T_NEAR);
    L(l_row);
    mov(reg_act_tok, ptr[reg_args + offsetof(GemvArgs, act)]);
    mov(reg_out_t, reg_out);
    mov(reg_toks, ptr[reg_args + offsetof(GemvArgs, n_tokens)]);
    test(reg_toks, reg_toks);
    jle(l_row_next, T_NEAR);
    L(l_tok);
    mov(reg_w, reg_w_row);
    mov(reg_act, reg_act_tok);
    vxorps(ymm_acc, ymm_acc, ymm_acc);
    vxorps(xmm_acc_min, xmm_acc_min, xmm_acc_min);
    mov(reg_blocks, n_blocks_);
    L(l_blk);
    emit_superblock();
    add(reg_w, kWBlock);
    add(reg_act, kABlock);
    dec(reg_blocks);
    jnz(l_blk, T_NEAR);
    vextractf128(xmm_t, ymm_acc, 1);
    vaddps(xmm0, xmm0, xmm_t);
    vsubps(xmm0, xmm0, xmm_acc_min);
    vhaddps(xmm0, xmm0, xmm0);
    vhaddps(xmm0, xmm0, xmm0);
    vmovss(ptr[reg_out_t], xmm0);
    add(reg_act_tok, ptr[reg_args + offsetof(GemvArgs, act_stride)]);
    mov(rax, ptr[reg_args + offsetof(GemvArgs, out_stride)]);
    lea(reg_out_t, ptr[reg_out_t + rax * 4]);
    dec(reg_toks);
    jnz(l_tok, T_NEAR);
    L(l_row_next);
    add(reg_w_row, ptr[reg_args + offsetof(GemvArgs, w_stride)]);
    add(reg_out, 4);
    dec(reg_rows);
    jnz(l_row, T_NEAR);
    L(l_done);
    postamble();
  }

  int64_t n_blocks_;
};

}  // namespace

Expected<std::unique_ptr<GemvKernel>> create_gemv_q4_k_avx2(const GemvDesc& desc) {
  if (desc.type != GGMLType::Q4_K || desc.k <= 0 || desc.k % 256 != 0) {
    return Error("q4_k_avx2: needs Q4_K rows of a positive multiple of 256 elements, got {}",
                 desc.to_string());
  }
  auto kernel = std::make_unique<GemvQ4_KAvx2>(desc);
  KTX_RETURN_IF_ERROR(kernel->create(kernel->name()));
  return std::unique_ptr<GemvKernel>(std::move(kernel));
}

}  // namespace ktx::cpu
