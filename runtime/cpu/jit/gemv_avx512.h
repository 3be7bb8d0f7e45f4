// Factories of the generated AVX-512 VNNI GEMV kernels (tier `avx512`: AVX-512 F/BW/VL + VNNI).
// They share the GemvKernel contract of gemv.h and are registered in gemv_dispatch.cpp ahead of
// the AVX2 kernels. Generating the code needs no AVX-512 on the host (only running it does), so
// these factories work on any x86-64 CPU; make_gemv() only picks them where the CPU has the tier.
//
// Decode streams every weight byte once, so the one knob that matters besides the arithmetic is
// how the stream is fetched: Avx512Tuning sets the software prefetch (distance and cache level,
// or none to leave it to the hardware prefetchers). make_gemv() uses the defaults, which were
// chosen by the sweep in docs/performance.md; ktx-moe-bench exposes the knobs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/cpu/jit/gemv.h"

namespace ktx::cpu {

enum class PrefetchHint : uint8_t {
  none = 0,  // no software prefetch: the L2 streamer follows the linear weight stream alone
  t0 = 1,    // prefetcht0: into L1 (holds a line fill buffer until the line arrives)
  t1 = 2,    // prefetcht1: into L2
  nta = 3,   // prefetchnta: non-temporal (L1, not kept in the outer levels)
};

const char* prefetch_hint_name(PrefetchHint h);
// "none", "t0", "t1", "nta". Errors name the text and the accepted values.
Expected<PrefetchHint> parse_prefetch_hint(const std::string& text);

struct Avx512Tuning {
  // prefetcht1 8 KiB ahead: best of the sweep on the SPR host (docs/performance.md); t0 holds
  // an L1 fill buffer per line in flight and capped a core's stream near 8 GB/s.
  PrefetchHint hint = PrefetchHint::t1;
  int prefetch_bytes = 8192;  // distance ahead of the block being computed (0 < d < 1 MiB)

  std::string to_string() const;  // "prefetch=t0:1536"
  Status validate() const;
};

// Q4_K and Q5_K (k a multiple of 256) against q16_k activations: gemv_avx512_q4_k.cpp.
Expected<std::unique_ptr<GemvKernel>> create_gemv_q4_k_avx512(const GemvDesc& desc,
                                                              const Avx512Tuning& tuning = {});
// Q6_K (k a multiple of 256) against q16_k activations: gemv_avx512_q6_k.cpp.
Expected<std::unique_ptr<GemvKernel>> create_gemv_q6_k_avx512(const GemvDesc& desc,
                                                              const Avx512Tuning& tuning = {});
// Q8_0 and Q4_0 (k a multiple of 32) against q16_0 activations: gemv_avx512_legacy.cpp.
Expected<std::unique_ptr<GemvKernel>> create_gemv_legacy_avx512(const GemvDesc& desc,
                                                                const Avx512Tuning& tuning = {});
// BF16 and F16 (any k >= 1) against f32 activations: gemv_avx512_f16.cpp.
Expected<std::unique_ptr<GemvKernel>> create_gemv_f16_avx512(const GemvDesc& desc,
                                                             const Avx512Tuning& tuning = {});

// make_gemv() with explicit prefetch tuning for the avx512 kernels (other tiers ignore it).
// Errors: those of make_gemv(), and an invalid tuning (named).
Expected<std::unique_ptr<GemvKernel>> make_gemv_tuned(const GemvDesc& desc, const CpuIsa& cpu,
                                                      const Avx512Tuning& tuning);

}  // namespace ktx::cpu
