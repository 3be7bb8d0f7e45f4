// The plain C++ twin of the AMX prefill micro-kernel (see gemm_amx_kernel.h): the same int32
// block dot products and the same float operations in the same order, using std::fma where
// the generated code fuses, so both produce identical bits and tests can compare them exactly.
#include <cmath>
#include <cstring>

#include "runtime/cpu/act_quant.h"
#include "runtime/cpu/jit/gemm_amx_kernel.h"

namespace ktx::cpu {
namespace {

const float* byte_offset(const float* p, int64_t bytes) {
  return reinterpret_cast<const float*>(reinterpret_cast<const uint8_t*>(p) + bytes);
}

class GemmInt8Ref final : public GemmInt8Kernel {
 public:
  explicit GemmInt8Ref(bool has_bias) : has_bias_(has_bias) {}
  std::string name() const override { return has_bias_ ? "gemm_int8_ref_bias" : "gemm_int8_ref"; }

  void run(const GemmTileArgs& g) const override {
    for (int64_t p = 0; p < g.n_panels; ++p) panel(g, p);
  }

 private:
  void panel(const GemmTileArgs& g, int64_t p) const {
    float acc[kGemmTileM][kGemmTileN] = {};
    float* out = g.out + p * kGemmTileN;
    if (g.accumulate) {
      for (int64_t m = 0; m < kGemmTileM; ++m) std::memcpy(acc[m], out + m * g.out_stride, 64);
    }
    for (int64_t b = 0; b < g.k_blocks; ++b) {
      const int8_t* tile = g.b + p * g.b_panel_stride + b * 512;
      const float* ws = byte_offset(g.w_scale, p * g.w_panel_stride) + b * 16;
      const float* wb = byte_offset(g.w_bias, p * g.w_panel_stride) + b * 16;
      for (int64_t m = 0; m < kGemmTileM; ++m) {
        const int8_t* hi = g.a + m * g.a_stride + b * 32;
        const int8_t* lo = g.a_lo + m * g.a_stride + b * 32;
        const float as = g.a_scale[b * 16 + m], asum = g.a_sum[b * 16 + m];
        for (int n = 0; n < 16; ++n) {
          int32_t h = 0, l = 0;
          for (int e = 0; e < 32; ++e) {
            const int32_t w = tile[(e / 4) * 64 + n * 4 + e % 4];
            h += hi[e] * w;
            l += lo[e] * w;
          }
          float z = static_cast<float>(kQ16Base * h + l) * ws[n];  // fma(float(h), 255, float(l))
          z = std::fma(z, as, acc[m][n]);
          if (has_bias_) z = std::fma(wb[n], asum, z);
          acc[m][n] = z;
        }
      }
    }
    for (int64_t m = 0; m < kGemmTileM; ++m) std::memcpy(out + m * g.out_stride, acc[m], 64);
  }

  bool has_bias_;
};

}  // namespace

std::unique_ptr<GemmInt8Kernel> create_gemm_int8_ref(bool has_bias) {
  return std::make_unique<GemmInt8Ref>(has_bias);
}

}  // namespace ktx::cpu
