// Type table: names of known, unknown and fork-specific ids, block sizes (which the GGUF
// reader relies on to size tensors of any type), the supported set and its error message,
// and row sizes.
#include <gtest/gtest.h>

#include <string>

#include "common/quant/quant.h"

namespace ktx {
namespace {

TEST(Types, Names) {
  EXPECT_EQ(ggml_type_name(0), "F32");
  EXPECT_EQ(ggml_type_name(12), "Q4_K");
  EXPECT_EQ(ggml_type_name(23), "IQ4_XS");
  EXPECT_EQ(ggml_type_name(30), "BF16");
  EXPECT_EQ(ggml_type_name(34), "TQ1_0");
  EXPECT_EQ(ggml_type_name(39), "MXFP4");
  EXPECT_EQ(ggml_type_name(27), "I64");
  EXPECT_EQ(ggml_type_name(28), "F64");
  EXPECT_EQ(ggml_type_name(9), "Q8_1");
  EXPECT_EQ(ggml_type_name(15), "Q8_K");
  EXPECT_EQ(ggml_type_name(4), "type 4 (unknown)");   // retired Q4_2
  EXPECT_EQ(ggml_type_name(96), "type 96 (unknown)");
  EXPECT_EQ(ggml_type_name(97), "type 97 (fork-specific)");
  EXPECT_EQ(ggml_type_name(142), "type 142 (fork-specific)");
}

struct BlockCase {
  uint32_t id;
  int64_t elems, bytes;
};

TEST(Types, BlockSizes) {
  // From ggml's block structs: fp16 scale fields 2 bytes, QK_K = 256.
  const BlockCase cases[] = {
      {0, 1, 4},      {1, 1, 2},      {30, 1, 2},     {2, 32, 18},    {3, 32, 20},
      {6, 32, 22},    {7, 32, 24},    {8, 32, 34},    {9, 32, 36},    {10, 256, 84},
      {11, 256, 110}, {12, 256, 144}, {13, 256, 176}, {14, 256, 210}, {15, 256, 292},
      {16, 256, 66},  {17, 256, 74},  {18, 256, 98},  {19, 256, 50},  {20, 32, 18},
      {21, 256, 110}, {22, 256, 82},  {23, 256, 136}, {24, 1, 1},     {25, 1, 2},
      {26, 1, 4},     {27, 1, 8},     {28, 1, 8},     {29, 256, 56},  {34, 256, 54},
      {35, 256, 66},  {39, 32, 17},
  };
  for (const BlockCase& c : cases) {
    int64_t e = 0, b = 0;
    ASSERT_TRUE(ggml_type_block(c.id, &e, &b)) << ggml_type_name(c.id);
    EXPECT_EQ(e, c.elems) << ggml_type_name(c.id);
    EXPECT_EQ(b, c.bytes) << ggml_type_name(c.id);
  }
  int64_t e = 0, b = 0;
  EXPECT_FALSE(ggml_type_block(4, &e, &b));
  EXPECT_FALSE(ggml_type_block(31, &e, &b));
  EXPECT_FALSE(ggml_type_block(200, &e, &b));
}

TEST(Types, SupportedSet) {
  for (uint32_t id = 0; id < 300; ++id) {
    const bool expected = id == 0 || id == 1 || id == 30 || id == 2 || id == 3 || id == 6 ||
                          id == 7 || id == 8 || (id >= 10 && id <= 14);
    EXPECT_EQ(ggml_type_supported(id), expected) << id;
    EXPECT_EQ(check_type_supported(id).is_ok(), expected) << id;
  }
}

TEST(Types, UnsupportedMessages) {
  EXPECT_EQ(check_type_supported(23).message(),
            "IQ4_XS (type 23) is not supported by KTX; supported: F32, F16, BF16, Q4_0, Q4_1, "
            "Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K");
  const std::string fork = check_type_supported(142).message();
  EXPECT_NE(fork.find("142"), std::string::npos) << fork;
  EXPECT_NE(fork.find("fork-specific"), std::string::npos) << fork;
  const std::string unknown = check_type_supported(5).message();
  EXPECT_NE(unknown.find("type 5"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("unknown"), std::string::npos) << unknown;
}

TEST(Types, RowBytes) {
  auto r = ggml_row_bytes(GGMLType::Q4_K, 512);
  ASSERT_TRUE(r.has_value()) << r.status().message();
  EXPECT_EQ(*r, 2u * 144u);
  r = ggml_row_bytes(GGMLType::F32, 7);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 28u);
  r = ggml_row_bytes(GGMLType::IQ4_XS, 256);  // unsupported types can still be sized
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 136u);
  r = ggml_row_bytes(GGMLType::Q8_0, 0);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 0u);
  r = ggml_row_bytes(GGMLType::Q4_K, 100);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.status().message().find("Q4_K"), std::string::npos);
  EXPECT_NE(r.status().message().find("100"), std::string::npos);
  EXPECT_NE(r.status().message().find("256"), std::string::npos);
  EXPECT_FALSE(ggml_row_bytes(GGMLType::Q8_0, -32).has_value());
  EXPECT_FALSE(ggml_row_bytes(static_cast<GGMLType>(4), 32).has_value());
}

}  // namespace
}  // namespace ktx
