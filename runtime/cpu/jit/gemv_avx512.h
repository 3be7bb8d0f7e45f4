// Factories of the generated AVX-512 VNNI GEMV kernels (tier `avx512`: AVX-512 F/BW/VL + VNNI).
// They share the GemvKernel contract of gemv.h and are registered in gemv_dispatch.cpp ahead of
// the AVX2 kernels. Generating the code needs no AVX-512 on the host (only running it does), so
// these factories work on any x86-64 CPU; make_gemv() only picks them where the CPU has the tier.
#pragma once

#include <memory>

#include "runtime/cpu/jit/gemv.h"

namespace ktx::cpu {

// Q4_K (k a multiple of 256) against q8_k activations: gemv_avx512_q4_k.cpp.
Expected<std::unique_ptr<GemvKernel>> create_gemv_q4_k_avx512(const GemvDesc& desc);
// Q8_0 and Q4_0 (k a multiple of 32) against q8_0 activations: gemv_avx512_legacy.cpp.
Expected<std::unique_ptr<GemvKernel>> create_gemv_legacy_avx512(const GemvDesc& desc);

}  // namespace ktx::cpu
