// Reference dequantization of the K-quants. Two kinds of check:
//  - hand-worked values: specific bytes placed so a chosen element falls in a particular
//    sub-block / half / shift, with its value computed by hand in the comment;
//  - every element of random super-blocks against a naive per-element formula written here
//    from ../shared/docs/QUANTS.md (element index -> bytes), deliberately not mirroring the
//    implementation's loops, so an element-order or scale-packing slip shows up as a mismatch.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "common/quant/quant.h"
#include "test/unit/quant/quant_test_util.h"

namespace ktx {
namespace {

constexpr uint16_t kHalf = 0x3800;     // 0.5
constexpr uint16_t kQuarter = 0x3400;  // 0.25

using quant_test::decode;
using quant_test::f16;
using quant_test::put16;

// Q4_K layout: d @0, dmin @2, scales @4, qs @16. Q5_K: qh @16, qs @48.
TEST(DequantK, Q4_KHandValues) {
  std::vector<uint8_t> b(144, 0);
  put16(b, 0, kHalf);
  put16(b, 2, kQuarter);
  b[4 + 0] = 3;     // sc0 = 3
  b[4 + 4] = 2;     // mn0 = 2
  b[4 + 1] = 0x40;  // sc1 = 0; top bits 01 -> sc5 high = 1
  b[4 + 5] = 0xC0;  // mn1 = 0; top bits 11 -> mn5 high = 3
  b[4 + 8] = 0x15;  // sc4 = 5, mn4 = 1
  b[4 + 9] = 0x21;  // sc5 = 1 | 1<<4 = 17, mn5 = 2 | 3<<4 = 50
  b[16 + 0] = 0x7B;   // element 0: sub-block 0, q = 11 -> 0.5*3*11 - 0.25*2 = 16
  b[16 + 68] = 0xA6;  // element 132: sub-block 4, q = 6 -> 0.5*5*6 - 0.25*1 = 14.75
                      // element 164: sub-block 5, q = 10 -> 0.5*17*10 - 0.25*50 = 72.5
  const auto y = decode(GGMLType::Q4_K, b, 256);
  EXPECT_EQ(y[0], 16.0f);
  EXPECT_EQ(y[32], 0.0f);  // sub-block 1: sc = mn = 0
  EXPECT_EQ(y[132], 14.75f);
  EXPECT_EQ(y[164], 72.5f);
}

TEST(DequantK, Q5_KHandValues) {
  std::vector<uint8_t> b(176, 0);
  put16(b, 0, kHalf);
  put16(b, 2, kQuarter);
  b[4 + 0] = 3; b[4 + 4] = 2; b[4 + 1] = 0x40; b[4 + 5] = 0xC0; b[4 + 8] = 0x15; b[4 + 9] = 0x21;
  b[16 + 0] = 0x01;  // qh[0] bit 0: element 0 gains 16
  b[16 + 4] = 0x20;  // qh[4] bit 5 (= 2c+1, c = 2): element 164 gains 16
  b[48 + 0] = 0x7B;   // element 0: q = 27 -> 0.5*3*27 - 0.5 = 40
  b[48 + 68] = 0xA6;  // element 132: q = 6 (no fifth bit) -> 14.75
                      // element 164: q = 26 -> 0.5*17*26 - 12.5 = 208.5
  const auto y = decode(GGMLType::Q5_K, b, 256);
  EXPECT_EQ(y[0], 40.0f);
  EXPECT_EQ(y[132], 14.75f);
  EXPECT_EQ(y[164], 208.5f);
}

// Q6_K layout: ql @0, qh @128, scales @192, d @208.
TEST(DequantK, Q6_KHandValues) {
  std::vector<uint8_t> b(210, 0);
  put16(b, 208, kHalf);
  b[192 + 0] = 2;     // element 0: sc 2, q = 5 - 32 -> 0.5*2*(-27) = -27
  b[0] = 0x05;
  b[192 + 7] = 1;     // element 127 (h 0, l 31, fourth quarter): sc[1+6] = 1,
  b[63] = 0xF0;       //   q = (15 | 3<<4) - 32 = 31 -> 0.5*1*31 = 15.5
  b[128 + 31] = 0xC0;
  b[192 + 13] = 0xFD; // element 212 (h 1, l 20, third quarter): sc[8 + 1 + 4] = -3,
  b[84] = 0x90;       //   ql'[20] >> 4 = 9, (qh'[20] >> 4) & 3 = 2: q = 41 - 32 = 9
  b[128 + 52] = 0x20; //   -> 0.5*(-3)*9 = -13.5
  const auto y = decode(GGMLType::Q6_K, b, 256);
  EXPECT_EQ(y[0], -27.0f);
  EXPECT_EQ(y[127], 15.5f);
  EXPECT_EQ(y[212], -13.5f);
  EXPECT_EQ(y[1], -32.0f);  // all-zero bits: q = 0 - 32 -> 0.5*2*(-32)
}

// Q2_K layout: scales @0, qs @16, d @80, dmin @82.
TEST(DequantK, Q2_KHandValues) {
  std::vector<uint8_t> b(84, 0);
  put16(b, 80, kHalf);
  put16(b, 82, kQuarter);
  b[0] = 0x12;       // element 0: sc 2, mn 1, q = 3 -> 0.5*2*3 - 0.25*1 = 2.75
  b[16 + 0] = 0x03;
  b[15] = 0x37;      // element 245 (h 1, k 3, second group, l 5): scale byte 15 = sc 7, mn 3
  b[16 + 53] = 0x80; //   q = (qs[32 + 16 + 5] >> 6) & 3 = 2 -> 0.5*7*2 - 0.75 = 6.25
  const auto y = decode(GGMLType::Q2_K, b, 256);
  EXPECT_EQ(y[0], 2.75f);
  EXPECT_EQ(y[245], 6.25f);
  EXPECT_EQ(y[1], -0.25f);  // same group, q = 0 -> -dmin*mn
}

// Q3_K layout: hmask @0, qs @32, scales @96, d @108.
TEST(DequantK, Q3_KHandValues) {
  std::vector<uint8_t> b(110, 0);
  put16(b, 108, kHalf);
  b[96 + 0] = 0x0C;  // scale[0] = 12 | (1 << 4) = 28 -> -4
  b[96 + 8] = 0x01;
  b[32 + 0] = 0x02;  // element 0: low bits 2, hmask[0] bit 0 set -> q = 2 -> 0.5*(-4)*2 = -4
  b[0] = 0x01;
  b[96 + 7] = 0x50;  // scale[15] = (byte 7 >> 4) | ((byte 11 >> 6) << 4) = 5 | 32 = 37 -> 5
  b[96 + 11] = 0x80;
  b[32 + 53] = 0x40; // element 245: (qs[53] >> 6) & 3 = 1, hmask[21] bit 7 clear -> q = -3
  const auto y = decode(GGMLType::Q3_K, b, 256);
  EXPECT_EQ(y[0], -4.0f);
  EXPECT_EQ(y[245], -7.5f);  // 0.5*5*(-3)
}

// ---- naive per-element formulas (element e of one super-block) ----

// Q4_K / Q5_K sub-block s scale and min, written from QUANTS.md's two cases.
void k4_scale_min(const uint8_t* scales, int s, int* sc, int* mn) {
  if (s < 4) {
    *sc = scales[s] & 63;
    *mn = scales[s + 4] & 63;
  } else {
    *sc = (scales[s + 4] & 15) | ((scales[s - 4] >> 6) << 4);
    *mn = (scales[s + 4] >> 4) | ((scales[s] >> 6) << 4);
  }
}

float naive_q4_k(const uint8_t* blk, int e) {
  const int c = e / 64, upper = (e % 64) / 32, l = e % 32;
  int sc, mn;
  k4_scale_min(blk + 4, 2 * c + upper, &sc, &mn);
  const uint8_t byte = blk[16 + 32 * c + l];
  const int q = upper ? byte >> 4 : byte & 15;
  return f16(blk) * sc * q - f16(blk + 2) * mn;
}

float naive_q5_k(const uint8_t* blk, int e) {
  const int c = e / 64, upper = (e % 64) / 32, l = e % 32;
  int sc, mn;
  k4_scale_min(blk + 4, 2 * c + upper, &sc, &mn);
  const uint8_t byte = blk[48 + 32 * c + l];
  const int fifth = (blk[16 + l] >> (2 * c + upper)) & 1;
  const int q = (upper ? byte >> 4 : byte & 15) + 16 * fifth;
  return f16(blk) * sc * q - f16(blk + 2) * mn;
}

float naive_q6_k(const uint8_t* blk, int e) {
  const int h = e / 128, quarter = (e % 128) / 32, l = e % 32;
  const uint8_t ql = blk[64 * h + l + 32 * (quarter & 1)];
  const int low4 = quarter < 2 ? ql & 15 : ql >> 4;
  const int high2 = (blk[128 + 32 * h + l] >> (2 * quarter)) & 3;
  const int sc = static_cast<int8_t>(blk[192 + 8 * h + l / 16 + 2 * quarter]);
  return f16(blk + 208) * sc * ((low4 | (high2 << 4)) - 32);
}

float naive_q2_k(const uint8_t* blk, int e) {
  const int h = e / 128, k = (e % 128) / 32, g = (e % 32) / 16, l = e % 16;
  const uint8_t sb = blk[8 * h + 2 * k + g];
  const int q = (blk[16 + 32 * h + 16 * g + l] >> (2 * k)) & 3;
  return f16(blk + 80) * (sb & 15) * q - f16(blk + 82) * (sb >> 4);
}

// Q3_K scale[is]: 4 low bits from byte is%4 of a0/a1 (low or high nibble), 2 high bits from
// byte is%4 of a2 at bit 2*(is/4).
int q3_scale(const uint8_t* scales, int is) {
  const int t = is / 4, j = is % 4;
  const uint8_t src = scales[(t % 2 == 0 ? 0 : 4) + j];
  const int low4 = t < 2 ? src & 15 : src >> 4;
  const int high2 = (scales[8 + j] >> (2 * t)) & 3;
  return low4 | (high2 << 4);
}

float naive_q3_k(const uint8_t* blk, int e) {
  const int h = e / 128, k = (e % 128) / 32, g = (e % 32) / 16, l = e % 16;
  const int is = 8 * h + 2 * k + g;
  const int low2 = (blk[32 + 32 * h + 16 * g + l] >> (2 * k)) & 3;
  const bool high = (blk[16 * g + l] >> (4 * h + k)) & 1;
  const int q = low2 - (high ? 0 : 4);
  return f16(blk + 108) * (q3_scale(blk + 96, is) - 32) * q;
}

struct KCase {
  GGMLType type;
  float (*naive)(const uint8_t*, int);
  std::vector<int> f16_fields;  // byte offsets of f16 fields, given sane finite values
};

TEST(DequantK, EveryElementOfRandomBlocksMatchesNaiveFormula) {
  const KCase cases[] = {
      {GGMLType::Q2_K, naive_q2_k, {80, 82}}, {GGMLType::Q3_K, naive_q3_k, {108}},
      {GGMLType::Q4_K, naive_q4_k, {0, 2}},   {GGMLType::Q5_K, naive_q5_k, {0, 2}},
      {GGMLType::Q6_K, naive_q6_k, {208}},
  };
  std::mt19937 rng(99);
  for (const KCase& kc : cases) {
    const std::string name = ggml_type_name(static_cast<uint32_t>(kc.type));
    int64_t be = 0, bb = 0;
    ASSERT_TRUE(ggml_type_block(static_cast<uint32_t>(kc.type), &be, &bb)) << name;
    const int n_blocks = 9;  // random bytes: every bit of every field takes both values
    std::vector<uint8_t> bytes(static_cast<size_t>(bb * n_blocks));
    for (auto& v : bytes) v = static_cast<uint8_t>(rng());
    for (int i = 0; i < n_blocks; ++i) {
      for (int off : kc.f16_fields) {
        put16(bytes, bb * i + off, static_cast<uint16_t>(0x2000 + rng() % 0x1800));
      }
    }
    const auto y = decode(kc.type, bytes, be * n_blocks);
    for (int i = 0; i < n_blocks; ++i) {
      for (int e = 0; e < 256; ++e) {
        ASSERT_EQ(y[i * 256 + e], kc.naive(bytes.data() + bb * i, e))
            << name << " block " << i << " element " << e;
      }
    }
  }
}

}  // namespace
}  // namespace ktx
