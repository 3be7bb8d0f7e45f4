// Reference dequantization of the 32-element formats against hand-built blocks: a few elements
// whose values are worked out by hand in the comments, then every element of random blocks
// against a second, per-element transcription of ../shared/docs/QUANTS.md written here.
#include <gtest/gtest.h>

#include <cstdint>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/quant/quant.h"
#include "test/unit/quant/quant_test_util.h"

namespace ktx {
namespace {

constexpr uint16_t kHalf = 0x3800;     // 0.5
constexpr uint16_t kQuarter = 0x3400;  // 0.25
constexpr uint16_t kMinusTwo = 0xC000; // -2.0

using quant_test::decode;
using quant_test::f16;
using quant_test::put16;

TEST(DequantLegacy, Q4_0HandValues) {
  std::vector<uint8_t> b(18, 0x88);  // every nibble 8 -> value 0
  put16(b, 0, kHalf);
  b[2 + 0] = 0x9A;   // y[0] = 0.5*(10-8) = 1.0, y[16] = 0.5*(9-8) = 0.5
  b[2 + 15] = 0x0F;  // y[15] = 0.5*(15-8) = 3.5, y[31] = 0.5*(0-8) = -4.0
  const auto y = decode(GGMLType::Q4_0, b, 32);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[16], 0.5f);
  EXPECT_EQ(y[15], 3.5f);
  EXPECT_EQ(y[31], -4.0f);
  EXPECT_EQ(y[7], 0.0f);
}

TEST(DequantLegacy, Q4_1HandValues) {
  std::vector<uint8_t> b(20, 0);
  put16(b, 0, kQuarter);
  put16(b, 2, kMinusTwo);
  b[4 + 3] = 0xF1;  // y[3] = 0.25*1 - 2 = -1.75, y[19] = 0.25*15 - 2 = 1.75
  const auto y = decode(GGMLType::Q4_1, b, 32);
  EXPECT_EQ(y[3], -1.75f);
  EXPECT_EQ(y[19], 1.75f);
  EXPECT_EQ(y[0], -2.0f);
}

TEST(DequantLegacy, Q5_0HandValues) {
  std::vector<uint8_t> b(22, 0);
  put16(b, 0, kHalf);
  // qh bit 2 set (element 2 gains 16), bit 31 set (element 31 gains 16).
  b[2] = 0x04;
  b[5] = 0x80;
  b[6 + 2] = 0x03;  // y[2] = 0.5*((3|16)-16) = 1.5, y[18] = 0.5*(0-16) = -8
  b[6 + 15] = 0xF0; // y[15] = 0.5*(0-16) = -8, y[31] = 0.5*((15|16)-16) = 7.5
  const auto y = decode(GGMLType::Q5_0, b, 32);
  EXPECT_EQ(y[2], 1.5f);
  EXPECT_EQ(y[18], -8.0f);
  EXPECT_EQ(y[15], -8.0f);
  EXPECT_EQ(y[31], 7.5f);
}

TEST(DequantLegacy, Q5_1HandValues) {
  std::vector<uint8_t> b(24, 0);
  put16(b, 0, kHalf);
  put16(b, 2, kMinusTwo);
  b[4 + 2] = 0x01;   // qh bit 16: element 16 gains 16
  b[8 + 0] = 0x25;   // y[0] = 0.5*5 - 2 = 0.5, y[16] = 0.5*(2|16) - 2 = 7
  const auto y = decode(GGMLType::Q5_1, b, 32);
  EXPECT_EQ(y[0], 0.5f);
  EXPECT_EQ(y[16], 7.0f);
}

TEST(DequantLegacy, Q8_0HandValues) {
  std::vector<uint8_t> b(34, 0);
  put16(b, 0, kQuarter);
  b[2 + 0] = 0x80;  // -128 * 0.25 = -32
  b[2 + 31] = 0x7F; // 127 * 0.25 = 31.75
  b[2 + 9] = 0xFE;  // -2 * 0.25 = -0.5
  const auto y = decode(GGMLType::Q8_0, b, 32);
  EXPECT_EQ(y[0], -32.0f);
  EXPECT_EQ(y[31], 31.75f);
  EXPECT_EQ(y[9], -0.5f);
}

// Per-element transcription of QUANTS.md for block element j (0..31) of each format.
float naive_legacy(GGMLType t, const uint8_t* blk, int j) {
  const int lane = j % 16;
  const bool upper = j >= 16;
  switch (t) {
    case GGMLType::Q4_0: {
      const uint8_t q = blk[2 + lane];
      return f16(blk) * static_cast<float>((upper ? q >> 4 : q & 15) - 8);
    }
    case GGMLType::Q4_1: {
      const uint8_t q = blk[4 + lane];
      return f16(blk) * static_cast<float>(upper ? q >> 4 : q & 15) + f16(blk + 2);
    }
    case GGMLType::Q5_0:
    case GGMLType::Q5_1: {
      const bool has_m = t == GGMLType::Q5_1;
      const uint8_t* qh = blk + (has_m ? 4 : 2);
      const uint8_t q = qh[4 + lane];
      const int bit = (qh[j / 8] >> (j % 8)) & 1;  // bit j of the little-endian u32
      const int v = (upper ? q >> 4 : q & 15) | (bit << 4);
      if (has_m) return f16(blk) * static_cast<float>(v) + f16(blk + 2);
      return f16(blk) * static_cast<float>(v - 16);
    }
    case GGMLType::Q8_0: return f16(blk) * static_cast<float>(static_cast<int8_t>(blk[2 + j]));
    default: return 0.0f;
  }
}

TEST(DequantLegacy, EveryElementOfRandomBlocksMatchesNaiveFormula) {
  const GGMLType types[] = {GGMLType::Q4_0, GGMLType::Q4_1, GGMLType::Q5_0, GGMLType::Q5_1,
                            GGMLType::Q8_0};
  std::mt19937 rng(1234);
  for (GGMLType t : types) {
    int64_t be = 0, bb = 0;
    ASSERT_TRUE(ggml_type_block(static_cast<uint32_t>(t), &be, &bb));
    const int n_blocks = 7;
    std::vector<uint8_t> bytes(static_cast<size_t>(bb * n_blocks));
    for (auto& v : bytes) v = static_cast<uint8_t>(rng());
    for (int i = 0; i < n_blocks; ++i) {
      // Finite scales of either sign (random bits could be inf/NaN, which prove nothing).
      put16(bytes, bb * i, static_cast<uint16_t>(0x2000 + rng() % 0x1800 + (rng() & 0x8000)));
      if (t == GGMLType::Q4_1 || t == GGMLType::Q5_1) {
        put16(bytes, bb * i + 2, static_cast<uint16_t>(0x3000 + rng() % 0x1000 + (rng() & 0x8000)));
      }
    }
    const auto y = decode(t, bytes, be * n_blocks);
    for (int i = 0; i < n_blocks; ++i) {
      for (int j = 0; j < 32; ++j) {
        ASSERT_EQ(y[i * 32 + j], naive_legacy(t, bytes.data() + bb * i, j))
            << ggml_type_name(static_cast<uint32_t>(t)) << " block " << i << " element " << j;
      }
    }
  }
}

TEST(DequantFloat, F32F16BF16) {
  const float f[3] = {1.5f, -0.0f, 65504.0f};
  std::vector<uint8_t> b(12);
  std::memcpy(b.data(), f, 12);
  const auto y32 = decode(GGMLType::F32, b, 3);
  EXPECT_EQ(std::memcmp(y32.data(), f, 12), 0);
  std::vector<uint8_t> h = {0x00, 0x3E, 0x00, 0x80, 0xFF, 0x7B};  // 1.5, -0, 65504 as f16
  const auto y16 = decode(GGMLType::F16, h, 3);
  EXPECT_EQ(y16[0], 1.5f);
  EXPECT_TRUE(std::signbit(y16[1]) && y16[1] == 0.0f);
  EXPECT_EQ(y16[2], 65504.0f);
  std::vector<uint8_t> bf = {0xC0, 0x3F, 0x20, 0xC1};  // 1.5, -10 as bf16
  const auto ybf = decode(GGMLType::BF16, bf, 2);
  EXPECT_EQ(ybf[0], 1.5f);
  EXPECT_EQ(ybf[1], -10.0f);
}

}  // namespace
}  // namespace ktx
