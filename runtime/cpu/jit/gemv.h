// The CPU expert GEMV: out[t][r] = W[r] · act[t] for a block of weight rows of one expert and
// the few tokens routed to it (decode). Weights are GGUF blocks read in place; activations are
// in the kernel's ActFormat. Implementations are chosen by make_gemv() from an ordered list
// (generated AVX2 kernels first, the plain reference last): the first whose supports() accepts
// the descriptor on this CPU wins.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/hw/hw_profile.h"
#include "runtime/cpu/act_quant.h"
#include "common/kernels/kernel_desc.h"

namespace ktx::cpu {

// Arguments of one call; the generated code reads them from memory by offsetof, so the field
// order is part of the kernels' ABI.
struct GemvArgs {
  const uint8_t* w = nullptr;    // first weight row to compute
  int64_t w_stride = 0;          // bytes between weight rows
  const uint8_t* act = nullptr;  // token 0's activation row (ActFormat of the kernel)
  int64_t act_stride = 0;        // bytes between tokens' activation rows
  float* out = nullptr;          // out for (token 0, first row)
  int64_t out_stride = 0;        // floats between tokens' output rows
  int64_t n_rows = 0;            // weight rows to compute (>= 0)
  int64_t n_tokens = 0;          // tokens (>= 0)
};

// What one GEMV kernel is generated for.
struct GemvDesc {
  GGMLType type = GGMLType::F32;      // weight type
  int64_t k = 0;                      // elements per weight row (a multiple of the block)
  int unroll = 1;                     // K blocks per inner iteration (kernels may ignore it)
  IsaTier isa = IsaTier::reference;   // the strongest tier the plan allows

  std::string to_string() const;
};

class GemvKernel {
 public:
  virtual ~GemvKernel() = default;
  virtual std::string name() const = 0;
  virtual ActFormat act_format() const = 0;
  virtual void run(const GemvArgs& args) const = 0;
  // Generated code, empty for plain C++ kernels.
  virtual std::vector<uint8_t> code() const { return {}; }
};

// One entry of the dispatch list.
struct GemvImpl {
  const char* name;
  IsaTier tier;  // the ISA tier the implementation needs
  bool (*supports)(const GemvDesc& desc);
  Expected<std::unique_ptr<GemvKernel>> (*create)(const GemvDesc& desc);
};

// The ordered dispatch list, strongest first, reference last (which supports every type).
const std::vector<GemvImpl>& gemv_impls();

// The first implementation that supports `desc`, whose tier is allowed by desc.isa and
// available on `cpu`. Errors: invalid descriptor (names type and k), generation failure.
Expected<std::unique_ptr<GemvKernel>> make_gemv(const GemvDesc& desc, const CpuIsa& cpu);

// Plain C++ GEMV on f32 activations through dequantize_row: every supported type.
Expected<std::unique_ptr<GemvKernel>> create_gemv_reference(const GemvDesc& desc);
// Generated AVX2 kernels (gemv_avx2_legacy.cpp: Q8_0 and Q4_0; gemv_avx2_q4_k.cpp: Q4_K and
// Q5_K; gemv_avx2_q6_k.cpp).
Expected<std::unique_ptr<GemvKernel>> create_gemv_legacy_avx2(const GemvDesc& desc);
Expected<std::unique_ptr<GemvKernel>> create_gemv_q4_k_avx2(const GemvDesc& desc);
Expected<std::unique_ptr<GemvKernel>> create_gemv_q6_k_avx2(const GemvDesc& desc);
// BF16 and F16 (any k >= 1) against f32 activations: gemv_avx2_f16.cpp.
Expected<std::unique_ptr<GemvKernel>> create_gemv_f16_avx2(const GemvDesc& desc);
// F32 (any k >= 1) against f32 activations, AVX2+FMA intrinsics: gemv_f32.cpp.
Expected<std::unique_ptr<GemvKernel>> create_gemv_f32_avx2(const GemvDesc& desc);

}  // namespace ktx::cpu
