// Shared scaffolding of the generated GEMV kernels (gemv_avx2_*.cpp, gemv_avx512_*.cpp): the
// GemvKernel plumbing (run() calls the code with a GemvArgs*), the registers every kernel uses
// the same way, the row loop, the token-group dispatch, horizontal sums, the Q4_K/Q5_K scale
// unpacking and prefetch emission. Each kernel stays one generator class that names its own
// decoding registers and emits its block arithmetic; what it shares is emitted from here, so a
// change to the GemvArgs ABI or to the loop skeleton is made once. GemvAvx512Jit adds the
// AVX-512 kernels' common shape (tokens in groups of up to four, two activation base registers,
// tunable prefetch) as a template method: it owns the loop nest and calls emit_group().
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "runtime/cpu/jit/gemv.h"
#include "runtime/cpu/jit/gemv_avx512.h"
#include "runtime/cpu/jit/jit_kernel.h"

namespace ktx::cpu {

// Byte layouts the kernels emit as immediates: the int16-grade activation block of the K-quant
// kernels (act_quant.h) and GGUF's block_q6_K (128 B low nibbles ql, 64 B 2-bit high parts qh,
// sixteen int8 scales, fp16 d).
struct ActQ16K {
  static constexpr int bytes = static_cast<int>(sizeof(ActBlockQ16_K));
  static constexpr int bsum = static_cast<int>(offsetof(ActBlockQ16_K, bsum32));
  static constexpr int bsum16 = static_cast<int>(offsetof(ActBlockQ16_K, bsum16));
  static constexpr int hi = static_cast<int>(offsetof(ActBlockQ16_K, hi));
  static constexpr int lo = static_cast<int>(offsetof(ActBlockQ16_K, lo));
};
struct Q6KBlock {
  static constexpr int bytes = 210, qh = 128, sc = 192, d = 208;
};
// GGUF block_q4_K (fp16 d, dmin, 12 bytes of packed scales/mins, 128 bytes of nibbles) and
// block_q5_K (the same with 32 bytes of fifth bits qh before the nibbles).
struct Q45KBlock {
  static constexpr int qh = 16;  // Q5_K only
  static constexpr int bytes(bool q5) { return q5 ? 176 : 144; }
  static constexpr int qs(bool q5) { return q5 ? 48 : 16; }
};

class GemvJit : public JitKernel, public GemvKernel {
 public:
  void run(const GemvArgs& args) const final {
    getCode<void (*)(const GemvArgs*)>()(&args);
  }
  std::vector<uint8_t> code() const final {
    return {code_bytes(), code_bytes() + code_bytes_size()};
  }

 protected:
  using Reg64 = Xbyak::Reg64;
  using Reg32 = Xbyak::Reg32;
  using Xmm = Xbyak::Xmm;
  using Ymm = Xbyak::Ymm;
  using Zmm = Xbyak::Zmm;
  using Label = Xbyak::Label;
  using Address = Xbyak::Address;

  // Registers of the loop skeleton, the same in every GEMV kernel. rax is scratch throughout.
  const Reg64 reg_args = rdi;     // const GemvArgs* (System V first argument)
  const Reg64 reg_w_row = rsi;    // weight row r
  const Reg64 reg_w = rdx;        // current weight block
  const Reg64 reg_act_tok = rcx;  // first token (of the group): activation row
  const Reg64 reg_out = r9;       // &out[0][r]
  const Reg64 reg_out_t = r10;    // &out[t][r] of the (group's first) token
  const Reg64 reg_toks = rbx;     // tokens left

  // A GemvArgs field, read through reg_args: arg(offsetof(GemvArgs, w_stride)).
  Address arg(size_t field_offset) { return ptr[reg_args + field_offset]; }

  // for r in [0, n_rows):                        // `rows` counts down: a register, or a stack
  //   act_tok = act; out_t = &out[0][r]; toks = n_tokens   // qword for kernels out of GPRs
  //   body(row_next)                             // tokens of row r; may jump to row_next
  // `astride`, where given, is loaded with act_stride once before the loop.
  void emit_row_loop(const Xbyak::Operand& rows, const Reg64* astride,
                     const std::function<void(const Label& row_next)>& body);

  // Inside the row loop: tokens in groups of max_group (2, 4 or 8) while that many are left, then
  // one group of the rest (emit_group(g) for g < max_group). act_tok / out_t advance per group;
  // `astride`, where a kernel keeps act_stride in a register, saves a load from GemvArgs.
  void emit_token_groups(int max_group, const Label& row_next, const Reg64* astride,
                         const std::function<void(int group)>& emit_group);

  // The group of an AVX2 kernel with tokens in pairs (act[t]: token t's activation block):
  //   reg_w = row; act[0] (, act[1]) = the tokens' first blocks; init()
  //   n_blocks times: body(); reg_w += w_block; act[t] += a_block   (counter in blocks_left)
  //   out[t][r] = the xmm hsum(t) leaves its sum in, t < group      (rax: out_stride)
  void emit_pair_group(int group, const Reg64 (&act)[2], int64_t n_blocks, int w_block,
                       int a_block, const Address& blocks_left, const std::function<void()>& init,
                       const std::function<void()>& body,
                       const std::function<Xmm(int t)>& hsum);

  // In place: lane 0 of v's xmm = Σ v (8 floats) − Σ minus (4 floats, where given); tmp is
  // clobbered. v below 16 (vhaddps has no EVEX form).
  void emit_hsum_ymm(const Ymm& v, const Xmm& tmp, const Xmm* minus = nullptr);
  // The same for 16 floats of src, summed through `dst` (below 16): the sum is in its xmm.
  void emit_hsum_zmm(const Ymm& dst, const Zmm& src, const Xmm& tmp, const Xmm* minus = nullptr);

  // Q4_K / Q5_K: the 6-bit scales and mins of the super-block at reg_w (QUANTS.md packing, as
  // get_scale_min_k4) unpacked into four registers, one value per byte. Clobbers eax.
  void emit_unpack_scales_k4(const Reg32& sc_lo, const Reg32& mn_lo, const Reg32& sc_hi,
                             const Reg32& mn_hi);

  // A software prefetch of `hint` (none emits nothing).
  void emit_prefetch(PrefetchHint hint, const Address& a);
};

class GemvAvx512Jit : public GemvJit {
 protected:
  explicit GemvAvx512Jit(const Avx512Tuning& tuning) : tuning_(tuning) {}

  static constexpr int kMaxGroup = 4;  // tokens sharing one pass over a weight row

  const Reg64 reg_act0 = r8;      // current activation block of tokens 0 (and 1 at +stride)
  const Reg64 reg_act2 = rbp;     // current activation block of tokens 2 (and 3 at +stride)
  const Reg64 reg_astride = r11;  // bytes between tokens' activation rows

  // for r in [0, n_rows):                        // weight row stays in L1 across tokens
  //   for each group of G tokens (G = 4 while 4 are left, then 3, 2 or 1 once):
  //     emit_group(G)
  // `rows` as in emit_row_loop. Call after the prologue and the kernel's constants.
  void emit_decode_loops(const Xbyak::Operand& rows);
  // out[t][r] for the `group` tokens starting at reg_act_tok / reg_out_t.
  virtual void emit_group(int group) = 0;

  // Token t's (t < 4) current activation block plus a byte offset; act_b as a broadcast source.
  Address act(int t, int off) {
    const Reg64 base = t < 2 ? reg_act0 : reg_act2;
    return (t & 1) ? ptr[base + reg_astride + off] : ptr[base + off];
  }
  Address act_b(int t, int off) {
    const Reg64 base = t < 2 ? reg_act0 : reg_act2;
    return (t & 1) ? ptr_b[base + reg_astride + off] : ptr_b[base + off];
  }

  // Start of a group: reg_w at the row's first block, reg_act0/2 at the tokens' first blocks.
  void emit_group_pointers(int group);
  // Advance the group's activation pointers by `bytes`.
  void emit_advance_act(int group, int bytes);
  // out[t][r] = the xmm that hsum(t) leaves its sum in, for t < group. reg_act0 (free once the
  // blocks are done) walks the output rows; hsum must leave rax alone.
  void emit_group_stores(int group, const std::function<Xmm(int t)>& hsum);
  // The group of a super-block kernel (the AVX-512 twin of GemvJit::emit_pair_group), with
  // one float accumulator acc[t] per token:
  //   emit_group_pointers(group); acc[0..group) = 0
  //   n_blocks times: body(); reg_w += w_block; activation pointers += a_block
  //   out[t] = hsum(acc[t]) (through ymm_tmp / xmm_tmp)  (counter in blocks_left)
  void emit_superblock_group(int group, int64_t n_blocks, int w_block, int a_block,
                             const Xbyak::Operand& blocks_left, const Zmm* acc,
                             const Ymm& ymm_tmp, const Xmm& xmm_tmp,
                             const std::function<void()>& body);
  // The weight stream prefetched tuning_.prefetch_bytes ahead of reg_w + off.
  void emit_prefetch_w(int off) {
    emit_prefetch(tuning_.hint, ptr[reg_w + tuning_.prefetch_bytes + off]);
  }

  Avx512Tuning tuning_;
};

// Generate `Kernel` (constructed from args) and hand it out as a GemvKernel.
template <class Kernel, class... Args>
Expected<std::unique_ptr<GemvKernel>> create_gemv_jit(Args&&... args) {
  auto kernel = std::make_unique<Kernel>(std::forward<Args>(args)...);
  KTX_RETURN_IF_ERROR(kernel->create(kernel->name()));
  return std::unique_ptr<GemvKernel>(std::move(kernel));
}

}  // namespace ktx::cpu
