// GEMV dispatch: the ordered list of implementations and the plain reference kernel that ends
// it. Order matters: the first implementation that supports a descriptor on this CPU wins, so
// stronger tiers come first and the reference, which takes every supported type, comes last.
// The avx512 entries also have a tuned factory (prefetch knobs); make_gemv() passes defaults.
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
bool supports_q45_k(const GemvDesc& d) {
  return (d.type == GGMLType::Q4_K || d.type == GGMLType::Q5_K) && d.k % 256 == 0;
}
bool supports_q6_k(const GemvDesc& d) { return d.type == GGMLType::Q6_K && d.k % 256 == 0; }
bool supports_f32(const GemvDesc& d) { return d.type == GGMLType::F32 && d.k >= 1; }
bool supports_f16(const GemvDesc& d) {
  return (d.type == GGMLType::BF16 || d.type == GGMLType::F16) && d.k >= 1;
}

using TunedFactory = Expected<std::unique_ptr<GemvKernel>> (*)(const GemvDesc&,
                                                               const Avx512Tuning&);
// The list with each entry's tuned factory (null where the implementation has no knobs).
struct Entry {
  GemvImpl impl;
  TunedFactory tuned;
};

const std::vector<Entry>& entries() {
  static const std::vector<Entry> list = {
      {{"legacy_avx512", IsaTier::avx512, supports_legacy,
        [](const GemvDesc& d) { return create_gemv_legacy_avx512(d); }},
       create_gemv_legacy_avx512},
      {{"q4_k_avx512", IsaTier::avx512, supports_q45_k,
        [](const GemvDesc& d) { return create_gemv_q4_k_avx512(d); }},
       create_gemv_q4_k_avx512},
      {{"q6_k_avx512", IsaTier::avx512, supports_q6_k,
        [](const GemvDesc& d) { return create_gemv_q6_k_avx512(d); }},
       create_gemv_q6_k_avx512},
      {{"f16_avx512", IsaTier::avx512, supports_f16,
        [](const GemvDesc& d) { return create_gemv_f16_avx512(d); }},
       create_gemv_f16_avx512},
      {{"legacy_avx2", IsaTier::avx2, supports_legacy, create_gemv_legacy_avx2}, nullptr},
      {{"q4_k_avx2", IsaTier::avx2, supports_q45_k, create_gemv_q4_k_avx2}, nullptr},
      {{"q6_k_avx2", IsaTier::avx2, supports_q6_k, create_gemv_q6_k_avx2}, nullptr},
      {{"f16_avx2", IsaTier::avx2, supports_f16, create_gemv_f16_avx2}, nullptr},
      {{"f32_avx2", IsaTier::avx2, supports_f32, create_gemv_f32_avx2}, nullptr},
      {{"reference", IsaTier::reference, supports_any, create_gemv_reference}, nullptr},
  };
  return list;
}

}  // namespace

std::string GemvDesc::to_string() const {
  return fmt::format("gemv:type={},k={},unroll={},isa={}",
                     ggml_type_name(static_cast<uint32_t>(type)), k, unroll, isa_tier_name(isa));
}

Expected<std::unique_ptr<GemvKernel>> create_gemv_reference(const GemvDesc& desc) {
  return std::unique_ptr<GemvKernel>(std::make_unique<GemvReference>(desc));
}

const char* prefetch_hint_name(PrefetchHint h) {
  switch (h) {
    case PrefetchHint::none: return "none";
    case PrefetchHint::t0: return "t0";
    case PrefetchHint::t1: return "t1";
    case PrefetchHint::nta: return "nta";
  }
  return "?";
}

Expected<PrefetchHint> parse_prefetch_hint(const std::string& text) {
  for (PrefetchHint h : {PrefetchHint::none, PrefetchHint::t0, PrefetchHint::t1,
                         PrefetchHint::nta}) {
    if (text == prefetch_hint_name(h)) return h;
  }
  return Error("prefetch hint '{}': expected none, t0, t1 or nta", text);
}

std::string Avx512Tuning::to_string() const {
  return fmt::format("prefetch={}:{}", prefetch_hint_name(hint), prefetch_bytes);
}

Status Avx512Tuning::validate() const {
  if (hint != PrefetchHint::none && (prefetch_bytes <= 0 || prefetch_bytes >= (1 << 20))) {
    return Error("{}: the prefetch distance must be in (0, 1 MiB) bytes", to_string());
  }
  return Status::ok();
}

const std::vector<GemvImpl>& gemv_impls() {
  static const std::vector<GemvImpl> impls = [] {
    std::vector<GemvImpl> v;
    for (const Entry& e : entries()) v.push_back(e.impl);
    return v;
  }();
  return impls;
}

Expected<std::unique_ptr<GemvKernel>> make_gemv(const GemvDesc& desc, const CpuIsa& cpu) {
  return make_gemv_tuned(desc, cpu, Avx512Tuning{});
}

Expected<std::unique_ptr<GemvKernel>> make_gemv_tuned(const GemvDesc& desc, const CpuIsa& cpu,
                                                      const Avx512Tuning& tuning) {
  KTX_RETURN_IF_ERROR(tuning.validate().with_context(desc.to_string()));
  KTX_RETURN_IF_ERROR(check_type_supported(static_cast<uint32_t>(desc.type))
                          .with_context(desc.to_string()));
  auto row_bytes = ggml_row_bytes(desc.type, desc.k);
  if (!row_bytes || desc.k <= 0) {
    return Error("{}: k={} is not a positive multiple of the {} block", desc.to_string(), desc.k,
                 ggml_type_name(static_cast<uint32_t>(desc.type)));
  }
  for (const Entry& e : entries()) {
    const GemvImpl& impl = e.impl;
    if (impl.tier > desc.isa || !isa_tier_supported(impl.tier, cpu)) continue;
    if (!impl.supports(desc)) continue;
    auto kernel = e.tuned ? e.tuned(desc, tuning) : impl.create(desc);
    if (!kernel) return kernel.status().with_context(desc.to_string());
    return kernel;
  }
  return Error("{}: no GEMV implementation accepts it (the reference should)", desc.to_string());
}

}  // namespace ktx::cpu
