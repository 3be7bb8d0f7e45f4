// fp16 and bf16 conversions: exhaustive widening against an independent formula, exhaustive
// round trips, ties-to-even at every midpoint between neighbouring representable values, and
// the edges (overflow to inf, subnormals, signed zero, NaN staying NaN).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/quant/quant.h"

namespace ktx {
namespace {

// binary16 value from its fields, in double (independent of the implementation's bit moves).
double half_value(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
  const double mag = exp == 0 ? std::ldexp(mant, -24) : std::ldexp(1024 + mant, exp - 25);
  return sign ? -mag : mag;
}

TEST(Fp16, WidenEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    const int exp = (h >> 10) & 31;
    if (exp == 31) {
      if (h & 1023) {
        EXPECT_TRUE(std::isnan(f)) << h;
      } else {
        EXPECT_EQ(f, (h & 0x8000) ? -INFINITY : INFINITY) << h;
      }
      continue;
    }
    ASSERT_EQ(static_cast<double>(f), half_value(static_cast<uint16_t>(h))) << h;
    ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << h;
  }
}

TEST(Fp16, RoundTripEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t back = fp32_to_fp16(fp16_to_fp32(static_cast<uint16_t>(h)));
    if (((h >> 10) & 31) == 31 && (h & 1023)) {
      EXPECT_TRUE(std::isnan(fp16_to_fp32(back))) << h;  // NaN stays NaN
    } else {
      ASSERT_EQ(back, h);
    }
  }
}

// Between each pair of adjacent finite positive halves a < b: the midpoint goes to the one
// with an even mantissa, a hair below goes to a, a hair above to b. Covers subnormals, the
// subnormal/normal boundary and every exponent.
TEST(Fp16, RoundsToNearestEven) {
  for (uint16_t a = 0; a < 0x7bff; ++a) {
    const uint16_t b = a + 1;
    const float mid = static_cast<float>((half_value(a) + half_value(b)) / 2);  // exact
    ASSERT_EQ(fp32_to_fp16(mid), (a & 1) ? b : a) << a;
    ASSERT_EQ(fp32_to_fp16(std::nextafter(mid, 0.0f)), a) << a;
    ASSERT_EQ(fp32_to_fp16(std::nextafter(mid, INFINITY)), b) << a;
    ASSERT_EQ(fp32_to_fp16(-mid), 0x8000 | ((a & 1) ? b : a)) << a;
  }
}

TEST(Fp16, Edges) {
  EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(65519.99f), 0x7bff);  // below the midpoint to "65536"
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);   // the midpoint ties to even: inf
  EXPECT_EQ(fp32_to_fp16(1e10f), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(-1e10f), 0xfc00);
  EXPECT_EQ(fp32_to_fp16(INFINITY), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(-INFINITY), 0xfc00);
  EXPECT_EQ(fp32_to_fp16(0.0f), 0x0000);
  EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(0x1p-24f), 0x0001);       // smallest subnormal
  EXPECT_EQ(fp32_to_fp16(0x1p-25f), 0x0000);       // half of it: tie to even (0)
  EXPECT_EQ(fp32_to_fp16(0x1.000002p-25f), 0x0001);
  EXPECT_EQ(fp32_to_fp16(0x3p-25f), 0x0002);       // 1.5 units: tie to even (2)
  EXPECT_EQ(fp32_to_fp16(0x1p-14f), 0x0400);       // smallest normal
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(NAN))));
  // A NaN whose payload lives only in bits that narrowing drops must not become inf.
  EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(std::bit_cast<float>(0x7f800001u)))));
  EXPECT_EQ(fp16_to_fp32(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0xc000), -2.0f);
  EXPECT_EQ(fp16_to_fp32(0x0001), 0x1p-24f);
}

TEST(Bf16, WidenAndRoundTripEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_fp32(static_cast<uint16_t>(h));
    ASSERT_EQ(std::bit_cast<uint32_t>(f), h << 16);
    const uint16_t back = fp32_to_bf16(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_fp32(back))) << h;
    } else {
      ASSERT_EQ(back, h);
    }
  }
}

TEST(Bf16, RoundsToNearestEven) {
  for (uint32_t a = 0; a < 0x7f7f; ++a) {
    const uint32_t b = a + 1;
    const uint32_t mid_bits = (a << 16) | 0x8000u;  // exactly between a and b
    const float mid = std::bit_cast<float>(mid_bits);
    ASSERT_EQ(fp32_to_bf16(mid), (a & 1) ? b : a) << a;
    ASSERT_EQ(fp32_to_bf16(std::bit_cast<float>(mid_bits - 1)), a) << a;
    ASSERT_EQ(fp32_to_bf16(std::bit_cast<float>(mid_bits + 1)), b) << a;
  }
}

TEST(Bf16, Edges) {
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(fp32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(fp32_to_bf16(INFINITY), 0x7f80);
  EXPECT_EQ(fp32_to_bf16(-INFINITY), 0xff80);
  EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds past: inf
  EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(0x00018000u)), 0x0002);  // subnormal tie
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(std::bit_cast<float>(0x7f800001u)))));
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(-NAN))));
}

}  // namespace
}  // namespace ktx
