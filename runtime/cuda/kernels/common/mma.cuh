// Tensor-core products of the prefill GEMMs (gemm/kernel.cuh): one warp-wide
// mma.sync.m16n8k16 with bf16 operands and float accumulation (sm_80+, every arch a plan
// targets), and the float -> bf16 rounding of its operands (to nearest, ties to even).
// Fragments, per lane (g = lane / 4, t = lane % 4; two bf16 per 32-bit word, the lower k first):
//   a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..], a[2] = A[g][2t+8..], a[3] = A[g+8][2t+8..]
//   b[0] = B[2t..2t+1][g], b[1] = B[2t+8..2t+9][g]         (B is k x n: its column n = g)
//   d[0..1] = C[g][2t..2t+1], d[2..3] = C[g+8][2t..2t+1]
// Off the device (dev/cuda_emu) the same product is emulated across the warp's lanes.
#pragma once

__device__ __forceinline__ unsigned ktx_bf16_bits(float f) {
  const unsigned u = __float_as_uint(f);
  return (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
}

__device__ __forceinline__ unsigned ktx_pack_bf16(float lo, float hi) {
  return ktx_bf16_bits(lo) | (ktx_bf16_bits(hi) << 16);
}

__device__ __forceinline__ void ktx_mma_bf16(const unsigned a[4], const unsigned b[2], float d[4]) {
#if defined(__CUDA_ARCH__)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  emu_mma_bf16_16816(a, b, d);
#endif
}
