// What every GPU test opens: device 0 with its arch's cubin (compiled here with NVRTC, as ktc
// does for a plan) and every kernel family bound; null without a device, so the test skips
// saying so (KTX_NEED_GPU). Also the tests' random data.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "common/cuda/nvrtc.h"
#include "runtime/cuda/attention.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/library.h"
#include "runtime/cuda/router.h"

namespace ktx::cuda::gpu_test {

inline std::vector<float> random_floats(size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// The integer GEMVs' rounding of x (ktx_quantize_x16), on the host: per 32 elements, in float,
// d = max|x| / 32767 and q = rint(x · 32767 / max|x|); returns d·q per element (as double).
inline std::vector<double> x16_rounded(const float* x, int64_t k) {
  std::vector<double> r(static_cast<size_t>(k));
  for (int64_t b = 0; b < k; b += 32) {
    float a = 0.0f;
    for (int64_t i = b; i < b + 32; ++i) a = std::max(a, std::fabs(x[i]));
    const float inv = a > 0.0f ? 32767.0f / a : 0.0f, d = a / 32767.0f;
    for (int64_t i = b; i < b + 32; ++i)
      r[static_cast<size_t>(i)] = double(d) * std::nearbyint(x[i] * inv);
  }
  return r;
}

// x rounded to bf16 (to nearest, ties to even) and widened: the operands of the tensor-core
// GEMMs (kernels/common/mma.cuh ktx_bf16_bits).
inline float bf16_round(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u = ((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16) << 16;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

struct Gpu {
  Library lib;
  Kernels k;        // GEMV, norm, element-wise
  AttnKernels a;    // attention families
  RouterKernels rk; // router, shared-expert gate, sampler
};

inline std::unique_ptr<Gpu> open_gpu() {
  if (device_count() == 0) return nullptr;
  auto arch = device_arch(0);
  if (!arch) return nullptr;
  auto cubin = compile_kernels(*arch);
  if (!cubin) {
    ADD_FAILURE() << cubin.status().message();
    return nullptr;
  }
  auto lib = Library::load(*cubin);
  if (!lib) {
    ADD_FAILURE() << lib.status().message();
    return nullptr;
  }
  auto g = std::make_unique<Gpu>();
  g->lib = std::move(*lib);
  auto k = Kernels::bind(g->lib);
  auto a = AttnKernels::bind(g->lib);
  auto rk = RouterKernels::bind(g->lib);
  for (const Status& st : {k.status(), a.status(), rk.status()})
    if (!st) {
      ADD_FAILURE() << st.message();
      return nullptr;
    }
  g->k = std::move(*k);
  g->a = std::move(*a);
  g->rk = std::move(*rk);
  return g;
}

}  // namespace ktx::cuda::gpu_test

#define KTX_NEED_GPU(g)                                  \
  auto g = ::ktx::cuda::gpu_test::open_gpu();            \
  if (!g) GTEST_SKIP() << "no CUDA device: GPU test skipped";
