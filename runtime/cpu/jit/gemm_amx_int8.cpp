// The generated AMX INT8 prefill micro-kernel (contract in gemm_amx_kernel.h). Tiles:
//   tmm0..3  C: 16 tokens x 16 rows int32     (slot s: tmm 2s = hi plane, 2s+1 = lo plane)
//   tmm4,5   A: 16 tokens x 32 int8           (hi and lo planes)
//   tmm6     B: 8 x 64 bytes                  (16 rows x 32 elements, VNNI quads)
// Float accumulators live in zmm0..15 (token m -> zmm m) for the whole block loop, so the
// only stores per block are the 16 rows of its two int32 tiles (there is no tile-to-register
// move). Loop nest emitted by generate():
//   for p in n_panels:
//     acc = accumulate ? out[.][16p..] : 0
//     for each block (C slots 0 and 1 alternate), software-pipelined:
//       products of the NEXT block: H, L = 0; load B, A_hi, A_lo; tdpbssd ×2; store H, L
//       epilogue of this block, for m in 16:
//                    c = fma(float(H[m]), 255, float(L[m]))      (exact integer, one rounding)
//                    acc[m] = (c * w_scale) * a_scale[m] + acc[m]
//                    acc[m] = w_bias * a_sum[m] + acc[m]            (if has_bias)
//     out[.][16p..] = acc
// Why the pipelining: a tile store does not forward to vector loads, and stores reach L1 only
// after they retire, so an epilogue that reads the tile it just stored stalls the whole
// window. Issuing the next block's products first gives the stores time to commit while the
// tile unit already works on the next block.
#include <cstddef>

#include "runtime/cpu/act_quant.h"
#include "runtime/cpu/jit/gemm_amx_kernel.h"
#include "runtime/cpu/jit/jit_kernel.h"

namespace ktx::cpu {
namespace {

using namespace Xbyak::util;

class GemmAmxInt8 final : public JitKernel, public GemmInt8Kernel {
 public:
  explicit GemmAmxInt8(bool has_bias) : JitKernel(32 * 1024), has_bias_(has_bias) {}
  std::string name() const override {
    return has_bias_ ? "gemm_int8_amx16_bias" : "gemm_int8_amx16";
  }
  void run(const GemmTileArgs& args) const override {
    getCode<void (*)(const GemmTileArgs*)>()(&args);
  }

 private:
  const Xbyak::Reg64 args_ = rdi, a_ = r8, a_stride_ = r9, a_scale_ = r10, a_sum_ = r11;
  const Xbyak::Reg64 b_ = r12, w_scale_ = r13, w_bias_ = r14, blocks_ = r15, a_lo_ = rbx;
  const Xbyak::Reg64 out_ = rcx, out_stride_ = rdx, stride64_ = rsi, frame_ = rbp, tmp_ = rax;
  const Xbyak::Zmm c255_ = zmm18;  // 255.0f: C = 255·H + L
  // Stack (64-byte aligned): four int32 C buffers, the tile configuration, panel bases and
  // the panels left.
  static constexpr int kCOff = 0, kCfgOff = 4096, kVarOff = 4160, kPanelsOff = 4184;
  static constexpr int kFrame = 4224;

  void config_tiles();
  void init_acc();
  void panel_body();
  void products(int slot, int block);
  void epilogue(int slot);
  void advance_block();
  void generate() override;

  bool has_bias_;
};

#define ARG(field) ptr[args_ + static_cast<int>(offsetof(GemmTileArgs, field))]

// Palette 1: C tiles 16 x 64 B, A tiles 16 x 32 B, B tile 8 x 64 B (tmm7 unused).
void GemmAmxInt8::config_tiles() {
  vpxord(zmm0, zmm0, zmm0);
  vmovups(ptr[rsp + kCfgOff], zmm0);
  mov(byte[rsp + kCfgOff], 1);
  const int colsb[8] = {64, 64, 64, 64, 32, 32, 64, 0};
  const int rows[8] = {16, 16, 16, 16, 16, 16, 8, 0};
  for (int t = 0; t < 8; ++t) {
    mov(word[rsp + kCfgOff + 16 + 2 * t], colsb[t]);
    mov(byte[rsp + kCfgOff + 48 + t], rows[t]);
  }
  ldtilecfg(ptr[rsp + kCfgOff]);
}

// acc (zmm0..15) = out rows of this panel when accumulating, else zero.
void GemmAmxInt8::init_acc() {
  Xbyak::Label zero, done;
  cmp(qword[args_ + static_cast<int>(offsetof(GemmTileArgs, accumulate))], 0);
  je(zero, T_NEAR);
  mov(tmp_, out_);
  for (int m = 0; m < kGemmTileM; ++m) {
    vmovups(Xbyak::Zmm(m), ptr[tmp_]);
    add(tmp_, out_stride_);
  }
  jmp(done, T_NEAR);
  L(zero);
  for (int m = 0; m < kGemmTileM; ++m) vpxord(Xbyak::Zmm(m), Xbyak::Zmm(m), Xbyak::Zmm(m));
  L(done);
}

// Block `block` (0: current, 1: next) into C slot `slot`: H = A_hi·B, L = A_lo·B, stored.
void GemmAmxInt8::products(int slot, int block) {
  const Xbyak::Tmm h(2 * slot), l(2 * slot + 1), a_hi(4), a_lo(5), b(6);
  tilezero(h);
  tilezero(l);
  tileloadd(b, ptr[b_ + stride64_ + block * 512]);
  tileloadd(a_hi, ptr[a_ + a_stride_ + block * 32]);
  tdpbssd(h, a_hi, b);
  tileloadd(a_lo, ptr[a_lo_ + a_stride_ + block * 32]);
  tdpbssd(l, a_lo, b);
  tilestored(ptr[rsp + stride64_ + kCOff + (2 * slot) * 1024], h);
  tilestored(ptr[rsp + stride64_ + kCOff + (2 * slot + 1) * 1024], l);
}

// The current block, whose tiles slot `slot` holds. zmm16/17: its weight scales/biases;
// zmm19..30 rotate in pairs as conversion temporaries.
void GemmAmxInt8::epilogue(int slot) {
  vmovups(zmm16, ptr[w_scale_]);
  if (has_bias_) vmovups(zmm17, ptr[w_bias_]);
  for (int m = 0; m < kGemmTileM; ++m) {
    const Xbyak::Zmm t(19 + (2 * m) % 12), u(20 + (2 * m) % 12), acc(m);
    vcvtdq2ps(t, ptr[rsp + kCOff + (2 * slot) * 1024 + m * 64]);
    vcvtdq2ps(u, ptr[rsp + kCOff + (2 * slot + 1) * 1024 + m * 64]);
    vfmadd132ps(t, u, c255_);  // t = 255·H + L
    vmulps(t, t, zmm16);
    vfmadd231ps(acc, t, ptr_b[a_scale_ + m * 4]);
    if (has_bias_) vfmadd231ps(acc, zmm17, ptr_b[a_sum_ + m * 4]);
  }
}

void GemmAmxInt8::advance_block() {
  add(a_, 32);
  add(a_lo_, 32);
  add(a_scale_, 64);
  add(a_sum_, 64);
  add(b_, 512);
  add(w_scale_, 64);
  add(w_bias_, 64);
}

// One panel: the pipelined block loop (unrolled twice so each half's C slots are fixed), then
// the store of acc.
void GemmAmxInt8::panel_body() {
  init_acc();
  mov(a_, ARG(a));
  mov(a_lo_, ARG(a_lo));
  mov(a_scale_, ARG(a_scale));
  mov(a_sum_, ARG(a_sum));
  mov(b_, ptr[rsp + kVarOff]);
  mov(w_scale_, ptr[rsp + kVarOff + 8]);
  mov(w_bias_, ptr[rsp + kVarOff + 16]);
  mov(blocks_, ARG(k_blocks));
  Xbyak::Label loop, skip_a, skip_b, store;
  products(0, 0);
  L(loop);  // current block in slot 0
  cmp(blocks_, 1);
  je(skip_a, T_NEAR);
  products(1, 1);
  L(skip_a);
  epilogue(0);
  advance_block();
  dec(blocks_);
  jz(store, T_NEAR);
  cmp(blocks_, 1);  // current block in slot 1
  je(skip_b, T_NEAR);
  products(0, 1);
  L(skip_b);
  epilogue(1);
  advance_block();
  dec(blocks_);
  jnz(loop, T_NEAR);
  L(store);
  mov(tmp_, out_);
  for (int m = 0; m < kGemmTileM; ++m) {
    vmovups(ptr[tmp_], Xbyak::Zmm(m));
    add(tmp_, out_stride_);
  }
}

void GemmAmxInt8::generate() {
  preamble();
  mov(frame_, rsp);
  sub(rsp, kFrame);
  and_(rsp, -64);
  config_tiles();
  mov(a_stride_, ARG(a_stride));
  mov(stride64_, 64);
  mov(out_, ARG(out));
  mov(out_stride_, ARG(out_stride));
  shl(out_stride_, 2);
  mov(tmp_, ARG(n_panels));
  mov(ptr[rsp + kPanelsOff], tmp_);
  mov(eax, 0x437f0000);  // 255.0f
  vpbroadcastd(c255_, eax);
  mov(tmp_, ARG(b));
  mov(ptr[rsp + kVarOff], tmp_);
  mov(tmp_, ARG(w_scale));
  mov(ptr[rsp + kVarOff + 8], tmp_);
  mov(tmp_, ARG(w_bias));
  mov(ptr[rsp + kVarOff + 16], tmp_);
  Xbyak::Label panel_loop;
  L(panel_loop);
  panel_body();
  add(out_, 64);
  mov(tmp_, ARG(b_panel_stride));
  add(ptr[rsp + kVarOff], tmp_);
  mov(tmp_, ARG(w_panel_stride));
  add(ptr[rsp + kVarOff + 8], tmp_);
  add(ptr[rsp + kVarOff + 16], tmp_);
  dec(qword[rsp + kPanelsOff]);
  jnz(panel_loop, T_NEAR);
  tilerelease();
  mov(rsp, frame_);
  postamble();
}

#undef ARG

}  // namespace

Expected<std::unique_ptr<GemmInt8Kernel>> create_gemm_int8_amx(bool has_bias,
                                                              const CpuIsa& cpu) {
  KTX_RETURN_IF_ERROR(require_amx_int8(cpu, "gemm_int8_amx"));
  auto kernel = std::make_unique<GemmAmxInt8>(has_bias);
  KTX_RETURN_IF_ERROR(kernel->create(kernel->name()));
  return std::unique_ptr<GemmInt8Kernel>(std::move(kernel));
}

}  // namespace ktx::cpu
