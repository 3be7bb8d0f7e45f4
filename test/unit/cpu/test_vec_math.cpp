// Vectorized SiLU·u of the MoE drivers (runtime/cpu/vec_math.h): the dispatched version gives
// the plain twin's bits for every length (vector body and scalar tail) and in place; both stay
// within 5e-7 relative of SiLU(g)·u computed in double, over a dense sweep of [-100, 100] and
// the clamp edges.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "common/util/rng.h"
#include "runtime/cpu/vec_math.h"

namespace ktx::cpu {
namespace {

std::vector<float> inputs() {
  std::vector<float> g;
  for (int i = -200000; i <= 200000; ++i) g.push_back(static_cast<float>(i) * 5e-4f);
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-40f, 86.9f, 87.0f, 87.1f, 88.0f, 88.5f, 89.0f,
                  -86.9f, -87.0f, -87.1f, -88.0f, -88.5f, -89.0f, 1e4f, -1e4f, 3.4e38f, -3.4e38f})
    g.push_back(v);
  return g;
}

TEST(VecMath, SiluMulMatchesTheTwinBitForBit) {
  const std::vector<float> g = inputs();
  Xoshiro256 rng(3);
  std::vector<float> u(g.size());
  for (auto& v : u) v = static_cast<float>(4.0 * rng.next_unit() - 2.0);
  const size_t lengths[] = {1, 7, 8, 9, 31, 1000, g.size()};
  for (size_t n : lengths) {
    std::vector<float> fast(n), ref(n);
    silu_mul(g.data(), u.data(), fast.data(), static_cast<int64_t>(n));
    silu_mul_ref(g.data(), u.data(), ref.data(), static_cast<int64_t>(n));
    ASSERT_EQ(std::memcmp(fast.data(), ref.data(), n * sizeof(float)), 0) << "n=" << n;
  }
  std::vector<float> h(g.begin(), g.begin() + 1000);  // in place, h aliasing g
  silu_mul(h.data(), u.data(), h.data(), 1000);
  std::vector<float> ref(1000);
  silu_mul_ref(g.data(), u.data(), ref.data(), 1000);
  EXPECT_EQ(std::memcmp(h.data(), ref.data(), sizeof(float) * 1000), 0);
}

TEST(VecMath, SiluMulIsAccurate) {
  const std::vector<float> g = inputs();
  const std::vector<float> u(g.size(), 1.0f);
  std::vector<float> h(g.size());
  silu_mul(g.data(), u.data(), h.data(), static_cast<int64_t>(g.size()));
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double x = g[i], want = x / (1.0 + std::exp(-x));
    ASSERT_TRUE(std::isfinite(h[i])) << "g=" << g[i];
    // Below the clamp (g < -87) SiLU is ~0 to float precision: an absolute bound there.
    const double err = std::fabs(h[i] - want), tol = 5e-7 * std::fabs(want) + 1e-36;
    ASSERT_LE(err, tol) << "g=" << g[i] << " got " << h[i] << " want " << want;
    if (g[i] > -87.0f && want != 0) worst = std::max(worst, err / std::fabs(want));
  }
  std::printf("worst relative error above the clamp: %.3g\n", worst);
  EXPECT_LE(worst, 5e-7);
}

}  // namespace
}  // namespace ktx::cpu
