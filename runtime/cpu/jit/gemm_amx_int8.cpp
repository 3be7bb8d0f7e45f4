// The generated AMX INT8 prefill micro-kernel (contract in gemm_amx_kernel.h). Tiles:
//   tmm0..3  C: 16 tokens x 16 rows int32   (token half i, panel j -> tmm(2i + j))
//   tmm4,5   A: 16 tokens x 32 int8         (token halves 0 and 1 of one 32-element block)
//   tmm6,7   B: 8 x 64 bytes                (panels 0 and 1: 16 rows x 32 elements, VNNI quads)
// Loop nest emitted by generate():
//   acc[32][32] = 0                                    (stack, L1)
//   for b in k_blocks:
//     C = 0; load A0 A1 B0 B1; 4 x tdpbssd; store C to the stack
//     for m in 32, j in 2:  acc[m][j] = (float(C) * w_scale_j) * a_scale[m] + acc[m][j]
//                           acc[m][j] += w_bias_j * a_sum[m]            (if has_bias)
//   out[m][0..31] = acc[m]
// The int32 tiles cover one 32-element block only: the weight scale changes every block, and
// scaling each block into float is what keeps the result equal to the dequantized weights.
#include <cstddef>

#include "common/hw/cpu_features.h"
#include "runtime/cpu/jit/gemm_amx_kernel.h"
#include "runtime/cpu/jit/jit_kernel.h"

namespace ktx::cpu {
namespace {

using namespace Xbyak::util;

class GemmAmxInt8 final : public JitKernel, public GemmInt8Kernel {
 public:
  explicit GemmAmxInt8(bool has_bias) : JitKernel(32 * 1024), has_bias_(has_bias) {}
  std::string name() const override {
    return has_bias_ ? "gemm_int8_amx_bias" : "gemm_int8_amx";
  }
  void run(const GemmTileArgs& args) const override {
    getCode<void (*)(const GemmTileArgs*)>()(&args);
  }

 private:
  // Registers.
  const Xbyak::Reg64 args_ = rdi, a0_ = r8, a_stride_ = r9, a1_ = r10, a_scale_ = r11;
  const Xbyak::Reg64 a_sum_ = r12, b0_ = r13, b1_ = r14, w_scale_ = r15, w_bias_ = rbx;
  const Xbyak::Reg64 w_panel_ = rcx, blocks_ = rdx, stride64_ = rsi, frame_ = rbp;
  // Stack layout (64-byte aligned): C tiles, float accumulators, tile configuration.
  static constexpr int kCOff = 0, kAccOff = 4096, kCfgOff = 8192, kFrame = 8256;

  void load_args();
  void config_tiles();
  void block_products();
  void block_epilogue();
  void generate() override;

  bool has_bias_;
};

#define ARG(field) ptr[args_ + static_cast<int>(offsetof(GemmTileArgs, field))]

void GemmAmxInt8::load_args() {
  mov(a0_, ARG(a));
  mov(a_stride_, ARG(a_stride));
  mov(a1_, a_stride_);
  shl(a1_, 4);
  add(a1_, a0_);
  mov(a_scale_, ARG(a_scale));
  mov(a_sum_, ARG(a_sum));
  mov(b0_, ARG(b));
  mov(b1_, b0_);
  add(b1_, ARG(b_panel_stride));
  mov(w_scale_, ARG(w_scale));
  mov(w_bias_, ARG(w_bias));
  mov(w_panel_, ARG(w_panel_stride));
  mov(blocks_, ARG(k_blocks));
  mov(stride64_, 64);
}

// Palette 1: C tiles 16 x 64 B, A tiles 16 x 32 B, B tiles 8 x 64 B.
void GemmAmxInt8::config_tiles() {
  vpxord(zmm0, zmm0, zmm0);
  vmovups(ptr[rsp + kCfgOff], zmm0);
  mov(byte[rsp + kCfgOff], 1);
  const int colsb[8] = {64, 64, 64, 64, 32, 32, 64, 64};
  const int rows[8] = {16, 16, 16, 16, 16, 16, 8, 8};
  for (int t = 0; t < 8; ++t) {
    mov(word[rsp + kCfgOff + 16 + 2 * t], colsb[t]);
    mov(byte[rsp + kCfgOff + 48 + t], rows[t]);
  }
  ldtilecfg(ptr[rsp + kCfgOff]);
  for (int i = 0; i < 64; ++i) vmovups(ptr[rsp + kAccOff + 64 * i], zmm0);
}

void GemmAmxInt8::block_products() {
  for (int t = 0; t < 4; ++t) tilezero(Xbyak::Tmm(t));
  tileloadd(tmm4, ptr[a0_ + a_stride_]);
  tileloadd(tmm5, ptr[a1_ + a_stride_]);
  tileloadd(tmm6, ptr[b0_ + stride64_]);
  tileloadd(tmm7, ptr[b1_ + stride64_]);
  tdpbssd(tmm0, tmm4, tmm6);
  tdpbssd(tmm1, tmm4, tmm7);
  tdpbssd(tmm2, tmm5, tmm6);
  tdpbssd(tmm3, tmm5, tmm7);
  for (int t = 0; t < 4; ++t) tilestored(ptr[rsp + stride64_ + kCOff + 1024 * t], Xbyak::Tmm(t));
}

// zmm0..15 rotate through the 64 accumulator rows; zmm16..23 hold broadcast activation
// scales and sums; zmm28..31 the two panels' weight scales and biases of this block.
void GemmAmxInt8::block_epilogue() {
  vmovups(zmm28, ptr[w_scale_]);
  vmovups(zmm29, ptr[w_scale_ + w_panel_]);
  if (has_bias_) {
    vmovups(zmm30, ptr[w_bias_]);
    vmovups(zmm31, ptr[w_bias_ + w_panel_]);
  }
  for (int m = 0; m < kGemmTileM; ++m) {
    const Xbyak::Zmm sc(16 + m % 4), sm(20 + m % 4);
    vbroadcastss(sc, ptr[a_scale_ + 4 * m]);
    if (has_bias_) vbroadcastss(sm, ptr[a_sum_ + 4 * m]);
    for (int j = 0; j < 2; ++j) {
      const Xbyak::Zmm z((2 * m + j) % 16);
      const int tile = (m / 16) * 2 + j, acc = kAccOff + m * 128 + j * 64;
      vcvtdq2ps(z, ptr[rsp + kCOff + tile * 1024 + (m % 16) * 64]);
      vmulps(z, z, j == 0 ? zmm28 : zmm29);
      vfmadd213ps(z, sc, ptr[rsp + acc]);
      if (has_bias_) vfmadd231ps(z, j == 0 ? zmm30 : zmm31, sm);
      vmovups(ptr[rsp + acc], z);
    }
  }
}

void GemmAmxInt8::generate() {
  preamble();
  mov(frame_, rsp);
  sub(rsp, kFrame);
  and_(rsp, -64);
  load_args();
  config_tiles();
  Xbyak::Label block_loop;
  L(block_loop);
  block_products();
  block_epilogue();
  add(a0_, 32);
  add(a1_, 32);
  add(a_scale_, 128);
  add(a_sum_, 128);
  add(b0_, 512);
  add(b1_, 512);
  add(w_scale_, 64);
  add(w_bias_, 64);
  dec(blocks_);
  jnz(block_loop, T_NEAR);
  // Copy the accumulators out (rax: output row, rdx: its stride in bytes).
  mov(rax, ARG(out));
  mov(rdx, ARG(out_stride));
  shl(rdx, 2);
  for (int m = 0; m < kGemmTileM; ++m) {
    vmovups(zmm0, ptr[rsp + kAccOff + m * 128]);
    vmovups(zmm1, ptr[rsp + kAccOff + m * 128 + 64]);
    vmovups(ptr[rax], zmm0);
    vmovups(ptr[rax + 64], zmm1);
    add(rax, rdx);
  }
  tilerelease();
  mov(rsp, frame_);
  postamble();
}

#undef ARG

}  // namespace

Expected<std::unique_ptr<GemmInt8Kernel>> create_gemm_int8_amx(bool has_bias,
                                                              const CpuIsa& cpu) {
  if (!cpu.amx_tile || !cpu.amx_int8 || !cpu.avx512f) {
    return Error("gemm_int8_amx: this CPU lacks {}{}{}", cpu.amx_tile ? "" : "amx_tile ",
                 cpu.amx_int8 ? "" : "amx_int8 ", cpu.avx512f ? "" : "avx512f");
  }
  if (!request_amx_permission()) {
    return Error("gemm_int8_amx: the OS refused AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM)");
  }
  auto kernel = std::make_unique<GemmAmxInt8>(has_bias);
  KTX_RETURN_IF_ERROR(kernel->create(kernel->name()));
  return std::unique_ptr<GemmInt8Kernel>(std::move(kernel));
}

}  // namespace ktx::cpu
