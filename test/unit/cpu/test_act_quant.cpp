// Activation formats of the CPU expert kernels (runtime/cpu/act_quant.h): every integer format
// round-trips within half a quantization step, the int16-grade formats keep both int8 planes in
// [-127, 127] with v = 255·hi + lo inside ±32512, the K formats' block sums are the sums of
// the stored values, and rounding is idempotent (the reference applies it to emulate a kernel).
// The AVX2 block quantizer gives the plain twin's bytes exactly (ties, clamps, outliers, zeros).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "common/util/rng.h"
#include "runtime/cpu/act_quant.h"

namespace ktx::cpu {
namespace {

std::vector<float> random_row(int64_t n, uint64_t seed, float spread) {
  Xoshiro256 rng(seed);
  std::vector<float> x(n);
  for (auto& v : x) v = spread * static_cast<float>(2.0 * rng.next_unit() - 1.0);
  if (n > 5) x[5] = 40.0f * spread;  // an outlier sets one block's scale
  return x;
}

struct FormatCase {
  ActFormat f;
  int64_t n;
  float rel_step;  // quantization step as a fraction of the block's max |x|
};

const FormatCase kFormats[] = {
    {ActFormat::q16_0, 96, 1.0f / kQ16Max}, {ActFormat::q16_k, 512, 1.0f / kQ16Max},
};

TEST(ActQuant, RoundTripWithinHalfAStep) {
  for (const auto& c : kFormats) {
    SCOPED_TRACE(act_format_name(c.f));
    const int64_t blk = act_block_elems(c.f);
    ASSERT_EQ(c.n % blk, 0);
    const auto x = random_row(c.n, 7, 3.0f);
    std::vector<uint8_t> q(act_row_bytes(c.f, c.n));
    quantize_act_row(c.f, x.data(), q.data(), c.n);
    std::vector<float> y(c.n);
    dequantize_act_row(c.f, q.data(), y.data(), c.n);
    for (int64_t b = 0; b < c.n / blk; ++b) {
      float amax = 0.0f;
      for (int64_t i = 0; i < blk; ++i) amax = std::max(amax, std::fabs(x[b * blk + i]));
      const float half_step = 0.5f * amax * c.rel_step * (1.0f + 1e-5f);
      for (int64_t i = b * blk; i < (b + 1) * blk; ++i) {
        ASSERT_LE(std::fabs(y[i] - x[i]), half_step) << "element " << i;
      }
    }
  }
}

TEST(ActQuant, Q16PlanesStayInRangeAndSumsMatch) {
  // Values at the plane boundaries: multiples of 255 ± 127/128 and the extremes.
  std::vector<float> x(512);
  for (int64_t i = 0; i < 512; ++i) {
    x[i] = static_cast<float>((i % 2 ? -1 : 1) * ((i * 255 + (i % 3 == 0 ? 128 : 127)) % 32513));
  }
  x[0] = 32512.0f;
  x[1] = -32512.0f;
  std::vector<uint8_t> q(act_row_bytes(ActFormat::q16_k, 512));
  quantize_act_row(ActFormat::q16_k, x.data(), q.data(), 512);
  const auto* blocks = reinterpret_cast<const ActBlockQ16_K*>(q.data());
  for (int b = 0; b < 2; ++b) {
    const ActBlockQ16_K& blk = blocks[b];
    for (int s = 0; s < 8; ++s) {
      int32_t sum = 0;
      for (int i = 32 * s; i < 32 * s + 32; ++i) {
        ASSERT_GE(blk.hi[i], -127);
        ASSERT_GE(blk.lo[i], -127);
        const int32_t v = kQ16Base * blk.hi[i] + blk.lo[i];
        ASSERT_LE(std::abs(v), kQ16Max);
        sum += v;
      }
      EXPECT_EQ(blk.bsum32[s], sum) << "block " << b << " sub-block " << s;
      int32_t first_half = 0;
      for (int i = 32 * s; i < 32 * s + 16; ++i) first_half += kQ16Base * blk.hi[i] + blk.lo[i];
      EXPECT_EQ(blk.bsum16[2 * s], first_half) << "block " << b << " 16-block " << 2 * s;
      EXPECT_EQ(blk.bsum16[2 * s + 1], sum - first_half) << "block " << b;
    }
  }
  // Block 0 holds ±32512 exactly: scale 1, every value stored exactly.
  EXPECT_EQ(blocks[0].d, 1.0f);
  for (int i = 0; i < 256; ++i) {
    EXPECT_EQ(kQ16Base * blocks[0].hi[i] + blocks[0].lo[i], static_cast<int32_t>(x[i])) << i;
  }
}

TEST(ActQuant, ZeroRowsAndIdempotentRounding) {
  for (const auto& c : kFormats) {
    SCOPED_TRACE(act_format_name(c.f));
    std::vector<float> z(c.n, 0.0f);
    round_act_row(c.f, z.data(), c.n);
    for (float v : z) ASSERT_EQ(v, 0.0f);
    auto x = random_row(c.n, 11, 0.25f);
    round_act_row(c.f, x.data(), c.n);
    auto again = x;
    round_act_row(c.f, again.data(), c.n);
    EXPECT_EQ(std::memcmp(x.data(), again.data(), x.size() * sizeof(float)), 0);
  }
}

TEST(ActQuant, VectorQuantizerGivesTheTwinsBytes) {
  struct Case {
    const char* what;
    std::vector<float> x;
  };
  std::vector<Case> cases;
  for (int64_t n : {256, 512, 7168}) cases.push_back({"random", random_row(n, 11 + n, 3.0f)});
  cases.push_back({"zeros", std::vector<float>(512, 0.0f)});
  {
    // Scale set by 32512.0 (d = 1): x·id lands on every half-integer (round to even) and on
    // the hi/lo split's own ties (|v| + 127 a multiple of 255), both signs.
    std::vector<float> x(2048);
    for (size_t i = 0; i < x.size(); ++i) {
      const float k = static_cast<float>(i % 512) * 63.5f + 0.5f;
      x[i] = (i / 512) % 2 ? -k : k;
      if (i % 7 == 0) x[i] = static_cast<float>(255 * static_cast<int>(i % 128) - 127);
    }
    for (size_t b = 0; b < x.size(); b += 256) x[b + 3] = 32512.0f;
    cases.push_back({"ties", x});
  }
  {
    std::vector<float> x = random_row(512, 5, 1e-30f);  // tiny scales, denormal products
    x[300] = -1e30f;                                     // and a block of one huge value
    cases.push_back({"extremes", x});
  }
  for (const Case& c : cases) {
    for (ActFormat f : {ActFormat::q16_0, ActFormat::q16_k}) {
      SCOPED_TRACE(testing::Message() << c.what << " n=" << c.x.size() << " "
                                      << act_format_name(f));
      const int64_t n = static_cast<int64_t>(c.x.size());
      std::vector<uint8_t> fast(act_row_bytes(f, n), 0xAA), ref(act_row_bytes(f, n), 0x55);
      quantize_act_row(f, c.x.data(), fast.data(), n);
      quantize_act_row_ref(f, c.x.data(), ref.data(), n);
      ASSERT_EQ(std::memcmp(fast.data(), ref.data(), fast.size()), 0);
    }
  }
}

TEST(ActQuant, FormatsForWeightTypes) {
  EXPECT_EQ(act_format_for(GGMLType::Q4_K, true), ActFormat::q16_k);
  EXPECT_EQ(act_format_for(GGMLType::Q6_K, true), ActFormat::q16_k);
  EXPECT_EQ(act_format_for(GGMLType::Q8_0, true), ActFormat::q16_0);
  EXPECT_EQ(act_format_for(GGMLType::Q4_0, true), ActFormat::q16_0);
  EXPECT_EQ(act_format_for(GGMLType::Q4_K, false), ActFormat::f32);
  EXPECT_EQ(act_format_for(GGMLType::BF16, true), ActFormat::f32);
  EXPECT_EQ(act_row_bytes(ActFormat::q16_k, 512), 2 * sizeof(ActBlockQ16_K));
  EXPECT_EQ(act_row_bytes(ActFormat::q16_0, 64), 2 * sizeof(ActBlockQ16_0));
}

}  // namespace
}  // namespace ktx::cpu
