// The plain C++ twin of the K-quant prefill kernel (gemm_kq_kernel.h), and the activation
// packing both read. The twin decodes the GGUF blocks itself, reads the activations through the
// packed layout (so a layout slip fails the conformance tests), forms the same exact int32
// products and repeats the generated code's float operations in order, with std::fma where it
// fuses: both give identical bits.
#include <array>
#include <cmath>
#include <cstring>

#include "common/quant/quant_blocks.h"
#include "runtime/cpu/jit/gemm_kq_kernel.h"

namespace ktx::cpu {
namespace {

// Byte b of a chunk row holding element e: the inverse of kq_perm.
constexpr std::array<int, 64> kq_inverse() {
  std::array<int, 64> inv{};
  for (int b = 0; b < 64; ++b) inv[kq_perm(b)] = b;
  return inv;
}
constexpr std::array<int, 64> kInv = kq_inverse();

using quant_detail::half_at;

// One super-block of one row: sc·q per element, m per sub-block, d and dmin.
struct SuperRow {
  int32_t wq[256];
  float m[8];
  float d, dmin;
};

void decode_super(GGMLType type, const uint8_t* blk, SuperRow* out) {
  out->d = half_at(blk);
  out->dmin = half_at(blk + 2);
  uint8_t sc[8], mn[8];
  for (int j = 0; j < 8; ++j) {
    quant_detail::unpack_scale_min_k4(blk + 4, j, &sc[j], &mn[j]);
    out->m[j] = static_cast<float>(mn[j]);
  }
  const bool q5 = type == GGMLType::Q5_K;
  uint8_t q[256];
  quant_detail::unpack_levels_k4(blk, q5, q);
  for (int k = 0; k < 256; ++k) out->wq[k] = sc[k / 32] * q[k];
}

class GemmKqRef final : public GemmKqKernel {
 public:
  explicit GemmKqRef(GGMLType type) : type_(type) {}
  std::string name() const override {
    return type_ == GGMLType::Q5_K ? "gemm_q5_k_ref" : "gemm_q4_k_ref";
  }
  GGMLType type() const override { return type_; }

  void run(const GemmKqArgs& a) const override {
    const int64_t block = type_ == GGMLType::Q5_K ? 176 : 144;
    for (int64_t g = 0; g < a.n_groups; ++g) {
      float* out = a.out + g * a.out_group_stride;
      std::memset(out, 0, kKqTile * kKqTile * sizeof(float));
    }
    SuperRow row;
    for (int64_t s = 0; s < a.n_super; ++s) {
      for (int n = 0; n < kKqTile; ++n) {
        decode_super(type_, a.w + n * a.w_stride + s * block, &row);
        for (int64_t g = 0; g < a.n_groups; ++g) {
          const int8_t* act = a.act + g * a.act_group_stride + s * kKqActBytes;
          const float* f = reinterpret_cast<const float*>(
                               reinterpret_cast<const uint8_t*>(a.act_f) +
                               g * a.act_f_group_stride) + s * kKqActFloats;
          float* out = a.out + g * a.out_group_stride + n * kKqTile;
          for (int t = 0; t < kKqTile; ++t) out[t] = cell(row, act, f, t, out[t]);
        }
      }
    }
  }

 private:
  static float cell(const SuperRow& row, const int8_t* act, const float* f, int t, float acc) {
    int32_t hh = 0, hl = 0, lh = 0, ll = 0;
    for (int k = 0; k < 256; ++k) {
      const int c = k / 64, b = kInv[k % 64];
      const int64_t at = c * 1024 + (b / 4) * 64 + t * 4 + b % 4;
      const int32_t hi = act[at], lo = act[4096 + at];
      const int32_t wh = row.wq[k] >> 7, wl = row.wq[k] & 127;
      hh += wh * hi, hl += wh * lo, lh += wl * hi, ll += wl * lo;
    }
    const float t0 = std::fma(static_cast<float>(hh), 255.0f, static_cast<float>(hl));
    const float t1 = std::fma(static_cast<float>(lh), 255.0f, static_cast<float>(ll));
    const float s = std::fma(t0, 128.0f, t1);
    float m = f[16 + t] * row.m[0];
    for (int j = 1; j < 8; ++j) m = std::fma(f[16 * (1 + j) + t], row.m[j], m);
    m *= row.dmin;
    const float r = std::fma(s, row.d, -m);
    return std::fma(r, f[t], acc);
  }

  GGMLType type_;
};

}  // namespace

bool gemm_kq_supported(GGMLType type) {
  return type == GGMLType::Q4_K || type == GGMLType::Q5_K;
}

void kq_pack_acts(const ActBlockQ16_K* const* tokens, int64_t n_super, int8_t* tiles,
                  int64_t tiles_stride, float* floats, int64_t floats_stride) {
  for (int64_t s = 0; s < n_super; ++s) {
    int8_t* dst = tiles + s * tiles_stride;
    float* f = floats + s * floats_stride;
    for (int t = 0; t < kKqTile; ++t) {
      const ActBlockQ16_K* blk = tokens[t] ? tokens[t] + s : nullptr;
      f[t] = blk ? blk->d : 0.0f;
      for (int j = 0; j < 8; ++j) {
        f[16 * (1 + j) + t] = blk ? static_cast<float>(blk->bsum32[j]) : 0.0f;
      }
      for (int p = 0; p < 2; ++p) {
        const int8_t* plane = blk ? (p == 0 ? blk->hi : blk->lo) : nullptr;
        for (int c = 0; c < 4; ++c) {
          for (int r = 0; r < 16; ++r) {
            // Bytes 4r..4r+3 of a chunk row hold elements kq_perm(4r) + 0..3 (same lane half).
            int8_t* d = dst + (p * 4 + c) * 1024 + r * 64 + t * 4;
            if (plane) {
              std::memcpy(d, plane + 64 * c + kq_perm(4 * r), 4);
            } else {
              std::memset(d, 0, 4);
            }
          }
        }
      }
    }
  }
}

Expected<std::unique_ptr<GemmKqKernel>> create_gemm_kq_ref(GGMLType type) {
  if (!gemm_kq_supported(type)) {
    return Error("gemm_kq: no K-quant prefill kernel for {} (Q4_K, Q5_K)",
                 ggml_type_name(static_cast<uint32_t>(type)));
  }
  return std::unique_ptr<GemmKqKernel>(new GemmKqRef(type));
}

}  // namespace ktx::cpu
