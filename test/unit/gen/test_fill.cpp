// Direct block filling: every weight type yields valid blocks whose reference dequantization
// is finite, near zero-mean, and has the standard deviation the generator aims for; the bytes
// do not depend on the thread count; row-length fallbacks follow llama-quantize.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/quant/quant.h"
#include "tools/ktx-run/gen/fill.h"
#include "tools/ktx-run/gen/generate.h"
#include "tools/ktx-run/gen/model_layout.h"

namespace ktx {
namespace {

GenTensor make_tensor(GGMLType type, int64_t ne0, int64_t ne1, GenInit init = GenInit::Weight) {
  GenTensor t;
  t.name = "blk.0.test.weight";
  t.type = t.requested = type;
  t.ne = {ne0, ne1};
  t.init = init;
  t.std = 1.0f / std::sqrt(static_cast<float>(ne0));
  t.n_bytes = *ggml_row_bytes(type, ne0) * static_cast<uint64_t>(ne1);
  return t;
}

class FillTypeTest : public ::testing::TestWithParam<GGMLType> {};

TEST_P(FillTypeTest, DequantizesToTargetScale) {
  const GGMLType type = GetParam();
  const GenTensor t = make_tensor(type, 1024, 16);
  std::vector<uint8_t> data(t.n_bytes);
  gen_detail::fill_tensor(t, 123, data.data(), 2);
  const uint64_t row_bytes = t.n_bytes / 16;
  std::vector<float> row(1024);
  double sum = 0, sum_sq = 0;
  for (int r = 0; r < 16; ++r) {
    dequantize_row(type, data.data() + r * row_bytes, row.data(), 1024);
    for (float v : row) {
      ASSERT_TRUE(std::isfinite(v)) << ggml_type_name(static_cast<uint32_t>(type));
      sum += v;
      sum_sq += double(v) * v;
    }
  }
  const double n = 1024.0 * 16;
  const double mean = sum / n;
  const double rms = std::sqrt(sum_sq / n);
  const std::string name = ggml_type_name(static_cast<uint32_t>(type));
  // 16k samples: the rms estimate is within a few percent; the model of the scale is exact up
  // to the fp16 rounding of d, so 10% catches any wrong scale field or packing.
  EXPECT_NEAR(rms, gen_detail::expected_std(type, t.std), 0.10 * t.std) << name;
  EXPECT_NEAR(rms, t.std, 0.15 * t.std) << name;
  EXPECT_LT(std::abs(mean), 0.1 * t.std) << name;
}

INSTANTIATE_TEST_SUITE_P(AllWeightTypes, FillTypeTest, ::testing::ValuesIn(gen_weight_types()),
                         [](const auto& info) {
                           return ggml_type_name(static_cast<uint32_t>(info.param));
                         });

TEST(Fill, NormsAreOnes) {
  const GenTensor t = make_tensor(GGMLType::F32, 64, 1, GenInit::Ones);
  std::vector<float> v(64, 0.0f);
  gen_detail::fill_tensor(t, 1, reinterpret_cast<uint8_t*>(v.data()), 1);
  for (float x : v) EXPECT_EQ(x, 1.0f);
}

TEST(Fill, BytesIndependentOfThreadCount) {
  // 4096 x 256 Q8_0 = 1.1 MB: more than one 1 MiB chunk.
  const GenTensor t = make_tensor(GGMLType::Q8_0, 4096, 256);
  std::vector<uint8_t> a(t.n_bytes), b(t.n_bytes), c(t.n_bytes);
  gen_detail::fill_tensor(t, 99, a.data(), 1);
  gen_detail::fill_tensor(t, 99, b.data(), 5);
  gen_detail::fill_tensor(t, 100, c.data(), 5);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(Fill, FallbackTypesFollowLlamaQuantize) {
  using gen_detail::fallback_type;
  EXPECT_EQ(fallback_type(GGMLType::Q4_K, 7168), GGMLType::Q4_K);
  EXPECT_EQ(fallback_type(GGMLType::Q4_K, 128), GGMLType::Q5_0);
  EXPECT_EQ(fallback_type(GGMLType::Q5_K, 128), GGMLType::Q5_1);
  EXPECT_EQ(fallback_type(GGMLType::Q6_K, 128), GGMLType::Q8_0);
  EXPECT_EQ(fallback_type(GGMLType::Q2_K, 64), GGMLType::Q4_0);
  EXPECT_EQ(fallback_type(GGMLType::Q8_0, 48), GGMLType::F16);
  EXPECT_EQ(fallback_type(GGMLType::BF16, 48), GGMLType::BF16);
}

TEST(Fill, RngIsDeterministicAndSpread) {
  gen_detail::Rng a(5), b(5), c(6);
  int same = 0;
  for (int i = 0; i < 1000; ++i) {
    const uint64_t x = a.next();
    EXPECT_EQ(x, b.next());
    same += x == c.next();
  }
  EXPECT_EQ(same, 0);
}

}  // namespace
}  // namespace ktx
