// Generated AVX2 GEMV for 16-bit float weights read in place, BF16 (the high half of an f32:
// widened by vpmovzxwd to dwords and shifted left by 16) and F16 (IEEE half: vcvtph2ps),
// against f32 activations (ActFormat::f32, no quantization). Both conversions to f32 are exact,
// and each product is taken exactly inside vfmadd231ps before its one rounding into the
// accumulator, so the kernel computes the reference's Σ w·x and differs from it only in the
// order of the float additions (lanes, accumulators, the final horizontal sum).
//
// Decode streams 2 bytes per weight, so the aim is to keep the stream moving, not to save
// arithmetic: tokens go in groups of up to four sharing each converted weight vector, and each
// token keeps U independent accumulators (U = 4 for groups of 1-2, 2 for groups of 3-4: at most
// 8 ymm) so consecutive FMAs do not wait on each other. Rows have no block constraint, so every
// k >= 1 is handled exactly: k / (8U) loop iterations, then the whole 8-element vectors left,
// then a last partial vector of p < 8 elements whose weights are inserted word by word (never
// read past the row) and whose activations are loaded under a lane mask (vmaskmovps reads no
// masked lane, so nothing past the activation row is touched). `unroll` is ignored.
#include <cstddef>

#include "runtime/cpu/jit/gemv_jit_common.h"

namespace ktx::cpu {
namespace {

using namespace Xbyak;
using namespace Xbyak::util;

class GemvF16Avx2 final : public GemvJit {
 public:
  explicit GemvF16Avx2(const GemvDesc& desc)
      : bf16_(desc.type == GGMLType::BF16), k_(desc.k) {}

  std::string name() const override {
    return fmt::format("gemv_{}_avx2", bf16_ ? "bf16" : "f16");
  }
  ActFormat act_format() const override { return ActFormat::f32; }

 private:
  static constexpr int kMaxGroup = 4;  // tokens sharing one pass over a weight row
  static constexpr int kVec = 8;       // floats per ymm
  // Accumulators per token: 8 ymm in all, so U = 4 up to two tokens and 2 beyond.
  static int unroll_of(int group) { return group > 2 ? 2 : 4; }

  // reg_args, reg_w_row, reg_w, reg_act_tok, reg_out, reg_out_t, reg_toks: see GemvJit.
  const Reg64 reg_act0 = r8;      // current activations of token 0 (and 1 at +stride)
  const Reg64 reg_act2 = rbp;     // current activations of token 2 (and 3 at +stride)
  const Reg64 reg_astride = r11;  // bytes between tokens' activation rows
  const Reg64 reg_rows = r12;     // rows left
  const Reg64 reg_iters = r13;    // loop iterations left
  // acc[t·U + u]: token t, vector u of the iteration. Below 16: the sums use VEX vhaddps.
  const Ymm ymm_acc[8] = {ymm0, ymm1, ymm2, ymm3, ymm4, ymm5, ymm6, ymm7};
  const Ymm ymm_w[4] = {ymm8, ymm9, ymm10, ymm11};  // weights as f32
  const Ymm ymm_mask = ymm12;     // the partial vector's lanes (all ones in its first p dwords)
  const Ymm ymm_a = ymm13;        // the partial vector's activations
  const Xmm xmm_tmp = xmm14;      // horizontal-sum temporary

  Label l_masks_;  // 8 dwords of ones, then 8 of zeros: the mask of p lanes starts at 8 - p

  // Token t's (t < 4) current activations plus a byte offset.
  Address act(int t, int off) {
    const Reg64 base = t < 2 ? reg_act0 : reg_act2;
    return (t & 1) ? ptr[base + reg_astride + off] : ptr[base + off];
  }

  // dst (f32) = the 8 halves in its own xmm, converted in place.
  void emit_widen(const Ymm& dst) {
    if (bf16_) {
      vpmovzxwd(dst, Xmm(dst.getIdx()));
      vpslld(dst, dst, 16);
    } else {
      vcvtph2ps(dst, Xmm(dst.getIdx()));
    }
  }

  // acc[t·U + u] += w[w_off..+8] · act_t[a_off..+8] for the group's tokens.
  void emit_vector(int group, int u, int w_off, int a_off) {
    const Ymm& w = ymm_w[u];
    if (bf16_) {
      vpmovzxwd(w, ptr[reg_w + w_off]);
      vpslld(w, w, 16);
    } else {
      vcvtph2ps(w, ptr[reg_w + w_off]);
    }
    const int n_acc = unroll_of(group);
    for (int t = 0; t < group; ++t) vfmadd231ps(ymm_acc[t * n_acc + u], w, act(t, a_off));
  }

  // The last p (1..7) elements of the row into acc[t·U + u]: weights word by word, the
  // activations under ymm_mask, so no byte past either row is read.
  void emit_partial(int group, int u, int w_off, int a_off, int p) {
    const Ymm& w = ymm_w[u];
    const Xmm xw(w.getIdx());
    vpxor(xw, xw, xw);
    for (int i = 0; i < p; ++i) vpinsrw(xw, xw, ptr[reg_w + w_off + 2 * i], i);
    emit_widen(w);
    const int n_acc = unroll_of(group);
    for (int t = 0; t < group; ++t) {
      vmaskmovps(ymm_a, ymm_mask, act(t, a_off));
      vfmadd231ps(ymm_acc[t * n_acc + u], w, ymm_a);
    }
  }

  // out[t][r] for the `group` tokens starting at reg_act_tok / reg_out_t.
  void emit_group(int group) {
    const int n_acc = unroll_of(group);
    const int step = n_acc * kVec;  // elements per iteration
    mov(reg_w, reg_w_row);
    mov(reg_act0, reg_act_tok);
    if (group > 2) lea(reg_act2, ptr[reg_act_tok + reg_astride * 2]);
    for (int i = 0; i < group * n_acc; ++i) vxorps(ymm_acc[i], ymm_acc[i], ymm_acc[i]);
    if (k_ / step > 0) {
      Label l_iter;
      mov(reg_iters, k_ / step);
      L(l_iter);
      for (int u = 0; u < n_acc; ++u) emit_vector(group, u, u * kVec * 2, u * kVec * 4);
      add(reg_w, step * 2);
      add(reg_act0, step * 4);
      if (group > 2) add(reg_act2, step * 4);
      dec(reg_iters);
      jnz(l_iter, T_NEAR);
    }
    const int rest = static_cast<int>(k_ % step), whole = rest / kVec, p = rest % kVec;
    for (int v = 0; v < whole; ++v) emit_vector(group, v, v * kVec * 2, v * kVec * 4);
    if (p) emit_partial(group, whole, whole * kVec * 2, whole * kVec * 4, p);
    mov(rax, arg(offsetof(GemvArgs, out_stride)));
    shl(rax, 2);
    mov(reg_act0, reg_out_t);  // free once the row is done: walks the output rows
    for (int t = 0; t < group; ++t) {
      const Ymm* acc = &ymm_acc[t * n_acc];
      for (int u = 1; u < n_acc; ++u) vaddps(acc[0], acc[0], acc[u]);
      emit_hsum_ymm(acc[0], xmm_tmp);
      vmovss(ptr[reg_act0], Xmm(acc[0].getIdx()));
      if (t + 1 < group) add(reg_act0, rax);
    }
  }

  // for r in [0, n_rows):                        // weight row stays in L1 across tokens
  //   for each group of G tokens (G = 4 while 4 are left, then 3, 2 or 1 once):
  //     acc[G][U] = 0                             // U = 4 for G <= 2, else 2
  //     for i in [0, k / 8U):
  //       for u < U:
  //         w = f32(W[r][8(iU + u) ..+8])          (once for the group)
  //         for g < G: acc[g][u] += w · x[g][8(iU + u) ..+8]
  //     whole vectors left (k % 8U / 8, emitted straight) into acc[g][0..]
  //     partial vector (k % 8 elements: weights by word, activations masked) into acc[g][next]
  //     out[g][r] = hsum(acc[g][0] + ... + acc[g][U-1])
  void generate() override {
    preamble();
    if (k_ % kVec) vmovdqu(ymm_mask, ptr[rip + l_masks_ + 4 * (kVec - k_ % kVec)]);
    emit_row_loop(reg_rows, &reg_astride, [&](const Label& row_next) {
      emit_token_groups(kMaxGroup, row_next, &reg_astride, [&](int g) { emit_group(g); });
    });
    postamble();
    align(32);
    L(l_masks_);
    for (int i = 0; i < 2 * kVec; ++i) dd(i < kVec ? 0xffffffffu : 0u);
  }

  bool bf16_;  // BF16 (else F16)
  int64_t k_;
};

}  // namespace

Expected<std::unique_ptr<GemvKernel>> create_gemv_f16_avx2(const GemvDesc& desc) {
  if ((desc.type != GGMLType::BF16 && desc.type != GGMLType::F16) || desc.k <= 0) {
    return Error("f16_avx2: needs BF16 or F16 rows of at least one element, got {}",
                 desc.to_string());
  }
  return create_gemv_jit<GemvF16Avx2>(desc);
}

}  // namespace ktx::cpu
