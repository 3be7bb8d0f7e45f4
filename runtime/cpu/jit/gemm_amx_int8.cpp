// The generated AMX INT8 prefill micro-kernel (contract in gemm_amx_kernel.h). Tiles:
//   tmm0..3  C: 16 tokens x 16 rows int32     (two pairs of blocks in flight)
//   tmm4,5   A: 16 tokens x 32 int8
//   tmm6,7   B: 8 x 64 bytes                  (16 rows x 32 elements, VNNI quads)
// Float accumulators live in zmm0..15 (token m -> zmm m) for the whole block loop, so the
// only stores per tile op are the 16 rows of its int32 tile (there is no tile-to-register
// move); the previous 32 x 32 design also loaded and stored a stack accumulator per row and
// block, which made it store-port bound. Loop nest emitted by generate():
//   for p in n_panels:
//     acc = accumulate ? out[.][16p..] : 0
//     for each pair of blocks (C tiles 0,1 and 2,3 alternate), software-pipelined:
//       products of the NEXT pair: C = 0; load A, B; tdpbssd; store C to its stack buffer
//       epilogue of this pair, for m in 16:
//                    acc[m] = (float(C[m]) * w_scale) * a_scale[m] + acc[m]
//                    acc[m] = w_bias * a_sum[m] + acc[m]            (if has_bias)
//     an odd last block alone; out[.][16p..] = acc
// Why the pipelining: a tile store does not forward to vector loads, and stores reach L1 only
// after they retire, so an epilogue that reads the tile it just stored stalls the whole
// window. Issuing the next pair's products first gives the stores time to commit while the
// tile unit already works on the next blocks.
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
    return has_bias_ ? "gemm_int8_amx16_bias" : "gemm_int8_amx16";
  }
  void run(const GemmTileArgs& args) const override {
    getCode<void (*)(const GemmTileArgs*)>()(&args);
  }

 private:
  const Xbyak::Reg64 args_ = rdi, a_ = r8, a_stride_ = r9, a_scale_ = r10, a_sum_ = r11;
  const Xbyak::Reg64 b_ = r12, w_scale_ = r13, w_bias_ = r14, blocks_ = r15, panels_ = rbx;
  const Xbyak::Reg64 out_ = rcx, out_stride_ = rdx, stride64_ = rsi, frame_ = rbp, tmp_ = rax;
  // Stack (64-byte aligned): four int32 C buffers, the tile configuration, panel bases.
  static constexpr int kCOff = 0, kCfgOff = 4096, kVarOff = 4160, kFrame = 4224;

  void config_tiles();
  void init_acc();
  void panel_body();
  void products(int slot, int block);
  void epilogue(int slot, int block);
  void advance_pair();
  void generate() override;

  bool has_bias_;
};

#define ARG(field) ptr[args_ + static_cast<int>(offsetof(GemmTileArgs, field))]

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

void GemmAmxInt8::products(int slot, int block) {
  const Xbyak::Tmm c(slot), a(4 + slot % 2), b(6 + slot % 2);
  tilezero(c);
  tileloadd(a, ptr[a_ + a_stride_ + block * 32]);
  tileloadd(b, ptr[b_ + stride64_ + block * 512]);
  tdpbssd(c, a, b);
  tilestored(ptr[rsp + stride64_ + kCOff + slot * 1024], c);
}

// zmm16/17: this block's weight scales/biases; zmm18..31 rotate as conversion temporaries.
void GemmAmxInt8::epilogue(int slot, int block) {
  vmovups(zmm16, ptr[w_scale_ + block * 64]);
  if (has_bias_) vmovups(zmm17, ptr[w_bias_ + block * 64]);
  for (int m = 0; m < kGemmTileM; ++m) {
    const Xbyak::Zmm t(18 + m % 14), acc(m);
    vcvtdq2ps(t, ptr[rsp + kCOff + slot * 1024 + m * 64]);
    vmulps(t, t, zmm16);
    vfmadd231ps(acc, t, ptr_b[a_scale_ + (block * 16 + m) * 4]);
    if (has_bias_) vfmadd231ps(acc, zmm17, ptr_b[a_sum_ + (block * 16 + m) * 4]);
  }
}

void GemmAmxInt8::advance_pair() {
  add(a_, 64);
  add(a_scale_, 128);
  add(a_sum_, 128);
  add(b_, 1024);
  add(w_scale_, 128);
  add(w_bias_, 128);
}

// One panel: the pipelined pair loop (blocks_ counts pairs; the loop body is unrolled twice so
// the C tile sets are fixed per half), an odd last block, then the store of acc.
void GemmAmxInt8::panel_body() {
  init_acc();
  mov(a_, ARG(a));
  mov(a_scale_, ARG(a_scale));
  mov(a_sum_, ARG(a_sum));
  mov(b_, ptr[rsp + kVarOff]);
  mov(w_scale_, ptr[rsp + kVarOff + 8]);
  mov(w_bias_, ptr[rsp + kVarOff + 16]);
  mov(blocks_, ARG(k_blocks));
  Xbyak::Label loop, skip_a, skip_b, single, store;
  shr(blocks_, 1);
  jz(single, T_NEAR);
  products(0, 0);
  products(1, 1);
  L(loop);  // current pair in C 0,1
  cmp(blocks_, 1);
  je(skip_a, T_NEAR);
  products(2, 2);
  products(3, 3);
  L(skip_a);
  epilogue(0, 0);
  epilogue(1, 1);
  advance_pair();
  dec(blocks_);
  jz(single, T_NEAR);
  cmp(blocks_, 1);  // current pair in C 2,3
  je(skip_b, T_NEAR);
  products(0, 2);
  products(1, 3);
  L(skip_b);
  epilogue(2, 0);
  epilogue(3, 1);
  advance_pair();
  dec(blocks_);
  jnz(loop, T_NEAR);
  L(single);
  test(byte[args_ + static_cast<int>(offsetof(GemmTileArgs, k_blocks))], 1);
  jz(store, T_NEAR);
  products(0, 0);
  epilogue(0, 0);
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
  mov(panels_, ARG(n_panels));
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
  dec(panels_);
  jnz(panel_loop, T_NEAR);
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
