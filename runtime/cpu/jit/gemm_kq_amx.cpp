// The generated AMX K-quant prefill kernel (contract and float order in gemm_kq_kernel.h).
// Tiles (all 16 rows x 64 bytes):
//   tmm0..3  C: HH, HL, LH, LL     [weight row][token] int32
//   tmm4,5   A: wh, wl planes of one 64-element chunk of the panel's 16 rows
//   tmm6,7   B: hi, lo activation planes of the same chunk, 16 tokens
// so each tile load feeds two tdpbssd. Loop nest emitted by generate():
//   zero out[g] for every group
//   expand super-block 0 into E0
//   for s in n_super:
//     prefetch super-block s + 2 of the 16 rows
//     for g in n_groups:                                  (flat step i = s·n_groups + g)
//       C = 0; for c in 4: load A wh, wl and B hi, lo; 4 × tdpbssd; store C to Cbuf[i % 2]
//       epilogue of step i − 1 (reads Cbuf[(i − 1) % 2], the wf block of its super-block)
//       if g == 0: expand super-block s + 1 into E[(s + 1) % 2]
//   epilogue of the last step
// Each step's epilogue runs one step late: a tile store does not forward to vector loads, so
// reading C right after storing it would stall; one step later the tile unit already works on
// the next step's products while the vector units convert the previous C. Super-block s + 1
// is expanded one super-block early for the same reason (tile loads wait for the stores that
// wrote their data to commit); the two buffers never clash: the epilogue of s − 1's last step
// (reading s − 1's d, dmin, m) runs before the expansion of s + 1 into the same buffer.
// Expansion of one row and chunk c (64 elements, sub-blocks 2c and 2c + 1):
//   W = zero-extend 32 bytes of qs to words; q0 = W & 15, q1 = W >> 4   (Q5_K: | 16·high bit)
//   p0 = q0 · sc_2c, p1 = q1 · sc_2c+1          (vpmaddubsw: word q times byte sc, zero pair)
//   wh = packus(p0 >> 7, p1 >> 7), wl = packus(p0 & 127, p1 & 127)    (kq_perm byte order)
// and per row the scales and mins are unpacked from the 12 packed bytes with two shuffles.
#include <cstddef>

#include "runtime/cpu/jit/gemm_kq_kernel.h"
#include "runtime/cpu/jit/jit_kernel.h"

namespace ktx::cpu {
namespace {

using namespace Xbyak::util;

class GemmKqAmx final : public JitKernel, public GemmKqKernel {
 public:
  explicit GemmKqAmx(GGMLType type) : JitKernel(32 * 1024), type_(type) {}
  std::string name() const override {
    return type_ == GGMLType::Q5_K ? "gemm_q5_k_amx" : "gemm_q4_k_amx";
  }
  GGMLType type() const override { return type_; }
  void run(const GemmKqArgs& args) const override {
    getCode<void (*)(const GemmKqArgs*)>()(&args);
  }

 private:
  const Xbyak::Reg64 args_ = rdi, stride64_ = rax, frame_ = rbp;
  const Xbyak::Reg64 w_ = r8, w_stride_ = r9, act_ = r10, act_f_ = r11, out_ = r12;
  const Xbyak::Reg64 cbuf_ = r13, exp_ = r15, groups_ = rdx;
  const Xbyak::Reg64 t0_ = rbx, t1_ = rcx, t2_ = rsi, t3_ = r14;  // epilogue / expansion
  const Xbyak::Zmm c255_ = zmm29, c128_ = zmm30, lo4_ = zmm31, lo7_ = zmm19, bit4_ = zmm18;

  // Stack frame (64-byte aligned): two expansion buffers (planes 8 KiB + wf 1 KiB: per row
  // d, dmin, m0..7), two C buffers, the tile configuration, one row's scale table, variables.
  static constexpr int kExpBytes = 9216, kWfOff = 8192;
  static constexpr int kExp0 = 0, kExp1 = kExpBytes, kC0 = 2 * kExpBytes, kC1 = kC0 + 4096;
  static constexpr int kCfg = kC1 + 4096, kScTab = kCfg + 64, kVars = kScTab + 64;
  enum Var { kSuperLeft, kActSuper, kActFSuper, kPrevC, kPrevWf, kPrevActF, kPrevOut,
             kSumC, kSumE, kOutStride, kNumVars };
  static constexpr int kFrame = kVars + 8 * kNumVars;
  Xbyak::Address var(Var v) { return qword[rsp + kVars + 8 * v]; }

  bool q5() const { return type_ == GGMLType::Q5_K; }
  int block_bytes() const { return q5() ? 176 : 144; }
  int qs_offset() const { return q5() ? 48 : 16; }

  void config_tiles();
  void expand();
  void products();
  void epilogue();
  void generate() override;

  GGMLType type_;
  Xbyak::Label shuf_a_, shuf_b_, mask_a1_, mask_a2_, mask_30_;
};

#define ARG(field) ptr[args_ + static_cast<int>(offsetof(GemmKqArgs, field))]

void GemmKqAmx::config_tiles() {
  vpxord(zmm0, zmm0, zmm0);
  vmovups(ptr[rsp + kCfg], zmm0);
  mov(byte[rsp + kCfg], 1);
  for (int t = 0; t < 8; ++t) {
    mov(word[rsp + kCfg + 16 + 2 * t], 64);
    mov(byte[rsp + kCfg + 48 + t], 16);
  }
  ldtilecfg(ptr[rsp + kCfg]);
}

// The super-block whose row 0 t0_ points at, for the 16 rows, into the buffer at t1_.
void GemmKqAmx::expand() {
  mov(t3_, kKqTile);
  Xbyak::Label row;
  L(row);
  // Scales and mins: bytes 0..7 = sc_j, 8..15 = m_j (see get_scale_min_k4 in QUANTS.md).
  vmovdqu(xmm6, ptr[t0_ + 4]);
  vpshufb(xmm7, xmm6, ptr[rip + shuf_a_]);   // s0-3 s8-11 s4-7 s8-11
  vpshufb(xmm8, xmm6, ptr[rip + shuf_b_]);   // 0 s0-3 0 s4-7
  vpand(xmm9, xmm7, ptr[rip + mask_a1_]);    // low 6 bits (j < 4) or low nibble (sc, j >= 4)
  vpsrlw(xmm7, xmm7, 4);
  vpand(xmm7, xmm7, ptr[rip + mask_a2_]);    // high nibble (m, j >= 4)
  vpor(xmm9, xmm9, xmm7);
  vpsrlw(xmm8, xmm8, 2);
  vpand(xmm8, xmm8, ptr[rip + mask_30_]);    // top two bits of the j - 4 byte, as bits 4, 5
  vpor(xmm9, xmm9, xmm8);
  vpmovzxbd(zmm10, xmm9);                    // 16 dwords: sc0..7, m0..7
  vpslld(ymm11, ymm10, 16);
  vpor(ymm11, ymm11, ymm10);                 // sc | sc << 16: word pairs (sc, 0) as bytes
  vmovdqu(ptr[rsp + kScTab], ymm11);
  vcvtdq2ps(zmm10, zmm10);
  vextractf32x8(ymm12, zmm10, 1);
  vmovups(ptr[t1_ + kWfOff + 8], ymm12);     // m0..7 as floats
  vcvtph2ps(xmm13, qword[t0_]);              // d, dmin
  vmovlps(ptr[t1_ + kWfOff], xmm13);
  if (q5()) vpmovzxbw(zmm14, ptr[t0_ + 16]);  // qh as words
  for (int c = 0; c < 4; ++c) {
    vpmovzxbw(zmm6, ptr[t0_ + qs_offset() + 32 * c]);
    vpandd(zmm7, zmm6, lo4_);
    vpsrlw(zmm8, zmm6, 4);
    if (q5()) {  // bit 2c of qh -> bit 4 of q0, bit 2c + 1 -> bit 4 of q1
      for (int h = 0; h < 2; ++h) {
        const int shift = 4 - (2 * c + h);
        if (shift > 0) {
          vpsllw(zmm9, zmm14, shift);
        } else if (shift < 0) {
          vpsrlw(zmm9, zmm14, -shift);
        } else {
          vmovdqa64(zmm9, zmm14);
        }
        vpandd(zmm9, zmm9, bit4_);
        vpord(h == 0 ? zmm7 : zmm8, h == 0 ? zmm7 : zmm8, zmm9);
      }
    }
    vpbroadcastd(zmm9, ptr[rsp + kScTab + 8 * c]);
    vpbroadcastd(zmm10, ptr[rsp + kScTab + 8 * c + 4]);
    vpmaddubsw(zmm7, zmm7, zmm9);   // p0 = q0 · sc_2c
    vpmaddubsw(zmm8, zmm8, zmm10);  // p1 = q1 · sc_2c+1
    vpsrlw(zmm11, zmm7, 7);
    vpsrlw(zmm12, zmm8, 7);
    vpackuswb(zmm11, zmm11, zmm12);  // wh
    vpandd(zmm7, zmm7, lo7_);
    vpandd(zmm8, zmm8, lo7_);
    vpackuswb(zmm7, zmm7, zmm8);     // wl
    vmovdqa64(ptr[t1_ + c * 1024], zmm11);
    vmovdqa64(ptr[t1_ + 4096 + c * 1024], zmm7);
  }
  add(t0_, w_stride_);
  add(t1_, 64);
  dec(t3_);
  jnz(row, T_NEAR);
}

// One step: the four products of the current group and super-block into Cbuf at cbuf_.
void GemmKqAmx::products() {
  for (int t = 0; t < 4; ++t) tilezero(Xbyak::Tmm(t));
  for (int c = 0; c < 4; ++c) {
    tileloadd(tmm4, ptr[exp_ + stride64_ + c * 1024]);
    tileloadd(tmm6, ptr[act_ + stride64_ + c * 1024]);
    tdpbssd(tmm0, tmm4, tmm6);
    tileloadd(tmm7, ptr[act_ + stride64_ + 4096 + c * 1024]);
    tdpbssd(tmm1, tmm4, tmm7);
    tileloadd(tmm5, ptr[exp_ + stride64_ + 4096 + c * 1024]);
    tdpbssd(tmm2, tmm5, tmm6);
    tdpbssd(tmm3, tmm5, tmm7);
  }
  for (int t = 0; t < 4; ++t) tilestored(ptr[cbuf_ + stride64_ + t * 1024], Xbyak::Tmm(t));
}

// The previous step's epilogue (its pointers saved in the frame).
void GemmKqAmx::epilogue() {
  mov(t0_, var(kPrevC));
  mov(t1_, var(kPrevWf));
  mov(t2_, var(kPrevActF));
  mov(t3_, var(kPrevOut));
  const Xbyak::Zmm ad = zmm20;
  vmovups(ad, ptr[t2_]);
  for (int j = 0; j < 8; ++j) vmovups(Xbyak::Zmm(21 + j), ptr[t2_ + 64 * (1 + j)]);
  for (int n = 0; n < kKqTile; ++n) {
    const int r = n * 64;
    const Xbyak::Zmm s(n % 2 ? 6 : 0), a(n % 2 ? 7 : 1), b(n % 2 ? 8 : 2), e(n % 2 ? 9 : 3);
    const Xbyak::Zmm m(n % 2 ? 10 : 4), acc(n % 2 ? 11 : 5);
    vcvtdq2ps(s, ptr[t0_ + r]);
    vcvtdq2ps(a, ptr[t0_ + 1024 + r]);
    vfmadd213ps(s, c255_, a);  // t0 = 255·HH + HL
    vcvtdq2ps(b, ptr[t0_ + 2048 + r]);
    vcvtdq2ps(e, ptr[t0_ + 3072 + r]);
    vfmadd213ps(b, c255_, e);  // t1 = 255·LH + LL
    vfmadd213ps(s, c128_, b);  // S = 128·t0 + t1
    vmulps(m, zmm21, ptr_b[t1_ + r + 8]);
    for (int j = 1; j < 8; ++j) vfmadd231ps(m, Xbyak::Zmm(21 + j), ptr_b[t1_ + r + 8 + 4 * j]);
    vmulps(m, m, ptr_b[t1_ + r + 4]);    // · dmin
    vfmsub132ps(s, m, ptr_b[t1_ + r]);   // S·d − M
    vmovups(acc, ptr[t3_ + r]);
    vfmadd231ps(acc, s, ad);
    vmovups(ptr[t3_ + r], acc);
  }
}

void GemmKqAmx::generate() {
  preamble();
  mov(frame_, rsp);
  sub(rsp, kFrame);
  and_(rsp, -64);
  config_tiles();
  mov(stride64_, 64);
  mov(t0_, 0x437f0000);  // 255.0f
  vpbroadcastd(c255_, t0_.cvt32());
  mov(t0_, 0x43000000);  // 128.0f
  vpbroadcastd(c128_, t0_.cvt32());
  mov(t0_, 0x000f000f);
  vpbroadcastd(lo4_, t0_.cvt32());
  mov(t0_, 0x007f007f);
  vpbroadcastd(lo7_, t0_.cvt32());
  mov(t0_, 0x00100010);
  vpbroadcastd(bit4_, t0_.cvt32());
  mov(w_, ARG(w));
  mov(w_stride_, ARG(w_stride));
  mov(t0_, ARG(out_group_stride));
  shl(t0_, 2);
  mov(var(kOutStride), t0_);
  // out[g] = 0
  vpxord(zmm0, zmm0, zmm0);
  mov(t0_, ARG(out));
  mov(groups_, ARG(n_groups));
  Xbyak::Label zero;
  L(zero);
  for (int n = 0; n < kKqTile; ++n) vmovups(ptr[t0_ + n * 64], zmm0);
  add(t0_, var(kOutStride));
  dec(groups_);
  jnz(zero, T_NEAR);
  // Buffer pairs are swapped as p = (p0 + p1) - p.
  lea(t0_, ptr[rsp + kC0]);
  lea(t1_, ptr[rsp + kC1]);
  mov(cbuf_, t0_);
  add(t0_, t1_);
  mov(var(kSumC), t0_);
  lea(t0_, ptr[rsp + kExp0]);
  lea(t1_, ptr[rsp + kExp1]);
  mov(exp_, t0_);
  add(t0_, t1_);
  mov(var(kSumE), t0_);
  mov(t0_, ARG(n_super));
  mov(var(kSuperLeft), t0_);
  mov(t0_, ARG(act));
  mov(var(kActSuper), t0_);
  mov(t0_, ARG(act_f));
  mov(var(kActFSuper), t0_);
  mov(qword[rsp + kVars + 8 * kPrevC], 0);  // no previous step yet
  mov(t0_, w_);
  mov(t1_, exp_);
  expand();

  Xbyak::Label super_loop, group_loop, no_prev, done;
  L(super_loop);
  mov(t0_, w_);  // prefetch the 16 rows' super-block s + 2 (expanded during s + 1)
  for (int n = 0; n < kKqTile; ++n) {
    for (int l = 0; l < block_bytes(); l += 64) prefetcht0(ptr[t0_ + 2 * block_bytes() + l]);
    add(t0_, w_stride_);
  }
  mov(act_, var(kActSuper));
  mov(act_f_, var(kActFSuper));
  mov(out_, ARG(out));
  mov(groups_, ARG(n_groups));
  L(group_loop);
  products();
  cmp(qword[rsp + kVars + 8 * kPrevC], 0);
  je(no_prev, T_NEAR);
  epilogue();
  L(no_prev);
  mov(var(kPrevC), cbuf_);
  lea(t0_, ptr[exp_ + kWfOff]);
  mov(var(kPrevWf), t0_);
  mov(var(kPrevActF), act_f_);
  mov(var(kPrevOut), out_);
  // After the first group's step, expand super-block s + 1 into the other buffer: its stores
  // then commit long before its tiles are loaded (a tile load does not take data from the
  // store buffer; expanding right before the loads would drain the tile unit).
  Xbyak::Label no_expand;
  cmp(groups_, ARG(n_groups));
  jne(no_expand, T_NEAR);
  cmp(qword[rsp + kVars + 8 * kSuperLeft], 1);
  je(no_expand, T_NEAR);
  lea(t0_, ptr[w_ + block_bytes()]);
  mov(t1_, var(kSumE));
  sub(t1_, exp_);
  expand();
  L(no_expand);
  mov(t0_, var(kSumC));
  sub(t0_, cbuf_);
  mov(cbuf_, t0_);
  add(act_, ARG(act_group_stride));
  add(act_f_, ARG(act_f_group_stride));
  add(out_, var(kOutStride));
  dec(groups_);
  jnz(group_loop, T_NEAR);
  add(qword[rsp + kVars + 8 * kActSuper], kKqActBytes);
  add(qword[rsp + kVars + 8 * kActFSuper], kKqActFloats * 4);
  add(w_, block_bytes());
  dec(qword[rsp + kVars + 8 * kSuperLeft]);
  jz(done, T_NEAR);
  mov(t0_, var(kSumE));
  sub(t0_, exp_);
  mov(exp_, t0_);
  jmp(super_loop, T_NEAR);
  L(done);
  epilogue();
  tilerelease();
  mov(rsp, frame_);
  postamble();

  align(16);
  L(shuf_a_);
  for (int b : {0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11}) db(b);
  L(shuf_b_);
  for (int b : {0x80, 0x80, 0x80, 0x80, 0, 1, 2, 3, 0x80, 0x80, 0x80, 0x80, 4, 5, 6, 7}) db(b);
  L(mask_a1_);
  for (int i = 0; i < 16; ++i) db(i < 4 || (i >= 8 && i < 12) ? 63 : i < 8 ? 15 : 0);
  L(mask_a2_);
  for (int i = 0; i < 16; ++i) db(i >= 12 ? 15 : 0);
  L(mask_30_);
  for (int i = 0; i < 16; ++i) db(0x30);
}

#undef ARG

}  // namespace

Expected<std::unique_ptr<GemmKqKernel>> create_gemm_kq_amx(GGMLType type, const CpuIsa& cpu) {
  if (!gemm_kq_supported(type)) {
    return Error("gemm_kq_amx: no K-quant prefill kernel for {} (Q4_K, Q5_K)",
                 ggml_type_name(static_cast<uint32_t>(type)));
  }
  KTX_RETURN_IF_ERROR(require_amx_int8(cpu, "gemm_kq_amx"));
  auto kernel = std::make_unique<GemmKqAmx>(type);
  KTX_RETURN_IF_ERROR(kernel->create(kernel->name()));
  return std::unique_ptr<GemmKqKernel>(std::move(kernel));
}

}  // namespace ktx::cpu
