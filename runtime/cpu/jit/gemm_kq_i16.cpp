// The int16 K-quant prefill GEMM for hosts without AMX (gemm_kq_kernel.h: i16_pairs layout):
// the activation packing, the plain C++ twin, and the factory of the AVX-512 VNNI body. The
// twin decodes the GGUF blocks itself, reads the activations through the packed layout (so a
// layout slip fails the conformance tests), forms the same exact int32 window sums and repeats
// the vector code's float operations in order, with std::fma where it fuses: identical bits.
#include <cstring>

#include "common/quant/quant_blocks.h"
#include "runtime/cpu/jit/gemm_kq_i16.h"

namespace ktx::cpu {
namespace {

using quant_detail::half_at;

class GemmKqI16Ref final : public GemmKqKernel {
 public:
  explicit GemmKqI16Ref(GGMLType type) : type_(type) {}
  std::string name() const override {
    return type_ == GGMLType::Q5_K ? "gemm_q5_k_i16_ref" : "gemm_q4_k_i16_ref";
  }
  GGMLType type() const override { return type_; }
  KqActLayout act_layout() const override { return KqActLayout::i16_pairs; }

  void run(const GemmKqArgs& a) const override {
    const bool q5 = type_ == GGMLType::Q5_K;
    const int64_t block = q5 ? 176 : 144;
    const int window = kq_i16_window(type_);
    for (int64_t g = 0; g < a.n_groups; ++g) {
      std::memset(a.out + g * a.out_group_stride, 0, kKqTile * kKqTile * sizeof(float));
    }
    KqI16Row row;
    for (int64_t s = 0; s < a.n_super; ++s) {
      for (int n = 0; n < kKqTile; ++n) {
        kq_i16_expand_row(q5, a.w + n * a.w_stride + s * block, &row);
        for (int64_t g = 0; g < a.n_groups; ++g) {
          const auto* act = reinterpret_cast<const int16_t*>(a.act + g * a.act_group_stride +
                                                             s * kKqActBytes);
          const float* f = reinterpret_cast<const float*>(
                               reinterpret_cast<const uint8_t*>(a.act_f) +
                               g * a.act_f_group_stride) + s * kKqActFloats;
          float* out = a.out + g * a.out_group_stride + n * kKqTile;
          for (int t = 0; t < kKqTile; ++t) {
            float S = 0.0f;
            for (int w0 = 0; w0 < kKqSuper; w0 += window) {
              int64_t sum = 0;  // fits int32 (the window bound): the vector code's int32
              for (int k = w0; k < w0 + window; ++k) {
                sum += static_cast<int64_t>(row.wq[k]) * act[((k / 2) * kKqTile + t) * 2 + k % 2];
              }
              const float f_sum = static_cast<float>(static_cast<int32_t>(sum));
              S = w0 == 0 ? f_sum : S + f_sum;
            }
            float m = f[16 + t] * row.m[0];
            for (int j = 1; j < 8; ++j) m = std::fma(f[16 * (1 + j) + t], row.m[j], m);
            m *= row.dmin;
            const float r = std::fma(S, row.d, -m);
            out[t] = std::fma(r, f[t], out[t]);
          }
        }
      }
    }
  }

 private:
  GGMLType type_;
};

}  // namespace

int kq_i16_window(GGMLType type) { return type == GGMLType::Q5_K ? 32 : 64; }

void kq_i16_expand_header(const uint8_t* blk, KqI16Row* out, uint8_t sc[8]) {
  out->d = half_at(blk);
  out->dmin = half_at(blk + 2);
  uint8_t mn[8];
  for (int j = 0; j < 8; ++j) {
    quant_detail::unpack_scale_min_k4(blk + 4, j, &sc[j], &mn[j]);
    out->m[j] = static_cast<float>(mn[j]);
  }
}

void kq_i16_expand_row(bool q5, const uint8_t* blk, KqI16Row* out) {
  uint8_t sc[8];
  kq_i16_expand_header(blk, out, sc);
  uint8_t q[kKqSuper];
  quant_detail::unpack_levels_k4(blk, q5, q);
  for (int k = 0; k < kKqSuper; ++k) out->wq[k] = static_cast<int16_t>(sc[k / 32] * q[k]);
}

void kq_pack_acts_i16(const ActBlockQ16_K* const* tokens, int64_t n_super, int8_t* tiles,
                      int64_t tiles_stride, float* floats, int64_t floats_stride) {
  for (int64_t s = 0; s < n_super; ++s) {
    auto* dst = reinterpret_cast<int16_t*>(tiles + s * tiles_stride);
    float* f = floats + s * floats_stride;
    for (int t = 0; t < kKqTile; ++t) {
      const ActBlockQ16_K* blk = tokens[t] ? tokens[t] + s : nullptr;
      f[t] = blk ? blk->d : 0.0f;
      for (int j = 0; j < 8; ++j) {
        f[16 * (1 + j) + t] = blk ? static_cast<float>(blk->bsum32[j]) : 0.0f;
      }
      for (int k = 0; k < kKqSuper; ++k) {
        const int v = blk ? kQ16Base * blk->hi[k] + blk->lo[k] : 0;
        dst[((k / 2) * kKqTile + t) * 2 + k % 2] = static_cast<int16_t>(v);
      }
    }
  }
}

Expected<std::unique_ptr<GemmKqKernel>> create_gemm_kq_i16_ref(GGMLType type) {
  if (!gemm_kq_supported(type)) {
    return Error("gemm_kq_i16: no K-quant prefill kernel for {} (Q4_K, Q5_K)",
                 ggml_type_name(static_cast<uint32_t>(type)));
  }
  return std::unique_ptr<GemmKqKernel>(new GemmKqI16Ref(type));
}

Expected<std::unique_ptr<GemmKqKernel>> create_gemm_kq_avx512(GGMLType type, const CpuIsa& cpu) {
  if (!gemm_kq_supported(type)) {
    return Error("gemm_kq_avx512: no K-quant prefill kernel for {} (Q4_K, Q5_K)",
                 ggml_type_name(static_cast<uint32_t>(type)));
  }
  std::string missing;
  if (!cpu.avx512f) missing += " avx512f";
  if (!cpu.avx512bw) missing += " avx512bw";
  if (!cpu.avx512_vnni) missing += " avx512_vnni";
  if (!missing.empty()) return Error("gemm_kq_avx512: this CPU lacks{}", missing);
  return kq_i16_detail::make_avx512(type);
}

Expected<std::unique_ptr<GemmKqKernel>> create_gemm_kq_avx2(GGMLType type, const CpuIsa& cpu) {
  if (!gemm_kq_supported(type)) {
    return Error("gemm_kq_avx2: no K-quant prefill kernel for {} (Q4_K, Q5_K)",
                 ggml_type_name(static_cast<uint32_t>(type)));
  }
  std::string missing;
  if (!cpu.avx2) missing += " avx2";
  if (!cpu.fma) missing += " fma";
  if (!missing.empty()) return Error("gemm_kq_avx2: this CPU lacks{}", missing);
  return kq_i16_detail::make_avx2(type);
}

}  // namespace ktx::cpu
