// The int8-activation K-quant prefill GEMM (gemm_kq_kernel.h: i8_quads layout): the
// activation packing, the plain C++ twin, and the factories. The twin decodes the GGUF blocks
// itself, reads the activations through the packed layout (so a layout slip fails the
// conformance tests), forms the same exact int32 sub-block dots and repeats the vector code's
// float operations in order, with std::fma where it fuses: identical bits.
#include <cmath>
#include <cstring>

#include "common/quant/quant_blocks.h"
#include "runtime/cpu/jit/gemm_kq_i8.h"

namespace ktx::cpu {
namespace {

using quant_detail::half_at;

class GemmKqI8Ref final : public GemmKqKernel {
 public:
  explicit GemmKqI8Ref(GGMLType type) : type_(type) {}
  std::string name() const override {
    return type_ == GGMLType::Q5_K ? "gemm_q5_k_i8_ref" : "gemm_q4_k_i8_ref";
  }
  GGMLType type() const override { return type_; }
  KqActLayout act_layout() const override { return KqActLayout::i8_quads; }

  void run(const GemmKqArgs& a) const override {
    const bool q5 = type_ == GGMLType::Q5_K;
    const int64_t block = q5 ? 176 : 144;
    for (int64_t g = 0; g < a.n_groups; ++g) {
      std::memset(a.out + g * a.out_group_stride, 0, kKqTile * kKqTile * sizeof(float));
    }
    KqI8Row row;
    for (int64_t s = 0; s < a.n_super; ++s) {
      for (int n = 0; n < kKqTile; ++n) {
        kq_i8_expand_row(q5, a.w + n * a.w_stride + s * block, &row);
        for (int64_t g = 0; g < a.n_groups; ++g) {
          const int8_t* act = a.act + g * a.act_group_stride + s * kKqActBytes;
          const auto* ad = reinterpret_cast<const float*>(act + kKqI8Scales);
          const auto* mb = reinterpret_cast<const float*>(act + kKqI8Mins);
          float* out = a.out + g * a.out_group_stride + n * kKqTile;
          for (int t = 0; t < kKqTile; ++t) {
            float acc = out[t];
            for (int j = 0; j < 8; ++j) {
              int32_t dot = 0;  // |dot| <= 32·31·127: exact
              for (int k = 32 * j; k < 32 * j + 32; ++k) {
                dot += static_cast<int32_t>(row.q[k]) * act[(k / 4) * 64 + t * 4 + k % 4];
              }
              const float p = ad[16 * j + t] * row.dsc[j];
              acc = std::fma(static_cast<float>(dot), p, acc);
              acc = std::fma(-mb[16 * j + t], row.dm[j], acc);
            }
            out[t] = acc;
          }
        }
      }
    }
  }

 private:
  GGMLType type_;
};

}  // namespace

void kq_i8_expand_header(const uint8_t* blk, KqI8Row* out) {
  const float d = half_at(blk), dmin = half_at(blk + 2);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, mn;
    quant_detail::unpack_scale_min_k4(blk + 4, j, &sc, &mn);
    out->dsc[j] = d * static_cast<float>(sc);
    out->dm[j] = dmin * static_cast<float>(mn);
  }
}

void kq_i8_expand_row(bool q5, const uint8_t* blk, KqI8Row* out) {
  kq_i8_expand_header(blk, out);
  quant_detail::unpack_levels_k4(blk, q5, out->q);
}

void kq_pack_acts_i8(const ActBlockQ8_K32* const* tokens, int64_t n_super, int8_t* tiles,
                     int64_t tiles_stride, float* floats, int64_t floats_stride) {
  for (int64_t s = 0; s < n_super; ++s) {
    int8_t* dst = tiles + s * tiles_stride;
    auto* ad = reinterpret_cast<float*>(dst + kKqI8Scales);
    auto* mb = reinterpret_cast<float*>(dst + kKqI8Mins);
    std::memset(floats + s * floats_stride, 0, kKqActFloats * sizeof(float));
    for (int t = 0; t < kKqTile; ++t) {
      const ActBlockQ8_K32* blk = tokens[t] ? tokens[t] + s : nullptr;
      for (int j = 0; j < 8; ++j) {
        ad[16 * j + t] = blk ? blk->d[j] : 0.0f;
        mb[16 * j + t] = blk ? blk->d[j] * static_cast<float>(blk->qsum[j]) : 0.0f;
      }
      for (int p = 0; p < kKqSuper / 4; ++p) {
        if (blk) {
          std::memcpy(dst + p * 64 + t * 4, blk->q + 4 * p, 4);
        } else {
          std::memset(dst + p * 64 + t * 4, 0, 4);
        }
      }
    }
  }
}

Expected<std::unique_ptr<GemmKqKernel>> create_gemm_kq_i8_ref(GGMLType type) {
  if (!gemm_kq_supported(type)) {
    return Error("gemm_kq_i8: no K-quant prefill kernel for {} (Q4_K, Q5_K)",
                 ggml_type_name(static_cast<uint32_t>(type)));
  }
  return std::unique_ptr<GemmKqKernel>(new GemmKqI8Ref(type));
}

Expected<std::unique_ptr<GemmKqKernel>> create_gemm_kq_avx512_i8(GGMLType type,
                                                                const CpuIsa& cpu) {
  if (!gemm_kq_supported(type)) {
    return Error("gemm_kq_avx512_i8: no K-quant prefill kernel for {} (Q4_K, Q5_K)",
                 ggml_type_name(static_cast<uint32_t>(type)));
  }
  std::string missing;
  if (!cpu.avx512f) missing += " avx512f";
  if (!cpu.avx512bw) missing += " avx512bw";
  if (!cpu.avx512_vnni) missing += " avx512_vnni";
  if (!missing.empty()) return Error("gemm_kq_avx512_i8: this CPU lacks{}", missing);
  return kq_i8_detail::make_avx512(type);
}

}  // namespace ktx::cpu
