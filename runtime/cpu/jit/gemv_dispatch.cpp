// GEMV dispatch: the ordered list of implementations and the plain reference kernel that ends
// it. Order matters: the first implementation that supports a descriptor on this CPU wins, so
// stronger tiers come first and the reference, which takes every supported type, comes last.
#include <cmath>
#include <vector>

#include "runtime/cpu/jit/gemv.h"
#include "runtime/cpu/jit/gemv_avx512.h"

namespace ktx::cpu {
namespace {

// Dequantizes each weight row once per call and dots it with every token's f32 activations:
// the slower path for types without a generated kernel, and the dispatch fallback.
class GemvReference final : public GemvKernel {
 public:
  explicit GemvReference(const GemvDesc& desc) : desc_(desc) {}
  std::string name() const override {
    return fmt::format("gemv_ref_{}", ggml_type_name(static_cast<uint32_t>(desc_.type)));
  }
  ActFormat act_format() const override { return ActFormat::f32; }
  void run(const GemvArgs& a) const override {
    thread_local std::vector<float> row;
    row.resize(static_cast<size_t>(desc_.k));
    for (int64_t r = 0; r < a.n_rows; ++r) {
      dequantize_row(desc_.type, a.w + r * a.w_stride, row.data(), desc_.k);
      for (int64_t t = 0; t < a.n_tokens; ++t) {
        const auto* x = reinterpret_cast<const float*>(a.act + t * a.act_stride);
        float acc = 0.0f;
        for (int64_t i = 0; i < desc_.k; ++i) acc += row[i] * x[i];
        a.out[t * a.out_stride + r] = acc;
      }
    }
  }

 private:
  GemvDesc desc_;
};

bool supports_any(const GemvDesc&) { return true; }
bool supports_legacy(const GemvDesc& d) {
  return (d.type == GGMLType::Q8_0 || d.type == GGMLType::Q4_0) && d.k % 32 == 0;
}
bool supports_q4_k(const GemvDesc& d) { return d.type == GGMLType::Q4_K && d.k % 256 == 0; }

}  // namespace

std::string GemvDesc::to_string() const {
  return fmt::format("gemv:type={},k={},unroll={},isa={}",
                     ggml_type_name(static_cast<uint32_t>(type)), k, unroll, isa_tier_name(isa));
}

Expected<std::unique_ptr<GemvKernel>> create_gemv_reference(const GemvDesc& desc) {
  return std::unique_ptr<GemvKernel>(std::make_unique<GemvReference>(desc));
}

const std::vector<GemvImpl>& gemv_impls() {
  static const std::vector<GemvImpl> impls = {
      {"legacy_avx512", IsaTier::avx512, supports_legacy, create_gemv_legacy_avx512},
      {"q4_k_avx512", IsaTier::avx512, supports_q4_k, create_gemv_q4_k_avx512},
      {"legacy_avx2", IsaTier::avx2, supports_legacy, create_gemv_legacy_avx2},
      {"q4_k_avx2", IsaTier::avx2, supports_q4_k, create_gemv_q4_k_avx2},
      {"reference", IsaTier::reference, supports_any, create_gemv_reference},
  };
  return impls;
}

Expected<std::unique_ptr<GemvKernel>> make_gemv(const GemvDesc& desc, const CpuIsa& cpu) {
  KTX_RETURN_IF_ERROR(check_type_supported(static_cast<uint32_t>(desc.type))
                          .with_context(desc.to_string()));
  auto row_bytes = ggml_row_bytes(desc.type, desc.k);
  if (!row_bytes || desc.k <= 0) {
    return Error("{}: k={} is not a positive multiple of the {} block", desc.to_string(), desc.k,
                 ggml_type_name(static_cast<uint32_t>(desc.type)));
  }
  for (const GemvImpl& impl : gemv_impls()) {
    if (impl.tier > desc.isa || !isa_tier_supported(impl.tier, cpu)) continue;
    if (!impl.supports(desc)) continue;
    auto kernel = impl.create(desc);
    if (!kernel) return kernel.status().with_context(desc.to_string());
    return kernel;
  }
  return Error("{}: no GEMV implementation accepts it (the reference should)", desc.to_string());
}

}  // namespace ktx::cpu
