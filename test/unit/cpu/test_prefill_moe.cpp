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

// 16 tokens x all panels of a matrix through a kernel vs float sums over dequantized weights
// and rounded inputs. Output rows are 8 floats wider than the panels, to catch overruns.
struct TileCase {
  RepackedMatrix w;
  std::vector<int8_t> a, a_lo;  // the activations' hi and lo planes [16][k]
  std::vector<float> scale, sum, x;  // x: the rounded activations [16][k]
  int64_t out_stride() const { return w.panels * kGemmTileN + 8; }
  // Blocks [b0, b0 + nb) of every panel; accumulate continues an earlier block range.
  GemmTileArgs args(float* out, int64_t b0, int64_t nb, bool accumulate) const {
    GemmTileArgs g;
    g.a = a.data() + b0 * 32, g.a_lo = a_lo.data() + b0 * 32, g.a_stride = w.k;
    g.a_scale = scale.data() + b0 * 16, g.a_sum = sum.data() + b0 * 16;
    g.b = w.panel_q(0) + b0 * kRepackTileBytes, g.b_panel_stride = w.blocks * kRepackTileBytes;
    g.w_scale = w.panel_scale(0) + b0 * 16, g.w_bias = w.panel_bias(0) + b0 * 16;
    g.w_panel_stride = w.blocks * kRepackPanel * 4;
    g.out = out, g.out_stride = out_stride(), g.k_blocks = nb;
    g.n_panels = w.panels, g.accumulate = accumulate ? 1 : 0;
    return g;
  }
  GemmTileArgs args(float* out) const { return args(out, 0, w.blocks, false); }
};

TileCase make_tile(GGMLType type, int64_t rows, int64_t k) {
  TileCase c;
  const auto data = random_rows(type, rows, k, 11);
  c.w = repack_int8(type, data.data(), rows, k, "tile").value();
  c.x = random_floats(16 * k, 1.0f, 12);
  const int64_t kb = k / 32;
  c.a.resize(16 * k), c.a_lo.resize(16 * k), c.scale.resize(16 * kb), c.sum.resize(16 * kb);
  for (int64_t m = 0; m < 16; ++m) {
    for (int64_t b = 0; b < kb; ++b) {
      ActBlockQ16_0 blk;
      quantize_act_row(ActFormat::q16_0, &c.x[m * k + b * 32], &blk, 32);
      int s = 0;
      for (int i = 0; i < 32; ++i) {
        c.a[m * k + b * 32 + i] = blk.hi[i], c.a_lo[m * k + b * 32 + i] = blk.lo[i];
        s += kQ16Base * blk.hi[i] + blk.lo[i];
      }
      c.scale[b * 16 + m] = blk.d, c.sum[b * 16 + m] = blk.d * s;
    }
    round_act_row(ActFormat::q16_0, &c.x[m * k], k);
  }
  return c;
}

TEST(PrefillKernel, TwinMatchesFloatMathOnDequantizedWeights) {
  for (GGMLType type : {GGMLType::Q8_0, GGMLType::Q4_K}) {
    SCOPED_TRACE(ggml_type_name(static_cast<uint32_t>(type)));
    const int64_t rows = 24, k = 256;  // rows 24..31 are padding: outputs must be 0
    const TileCase c = make_tile(type, rows, k);
    const int64_t os = c.out_stride();
    std::vector<float> out(16 * os, -1.0f);
    create_gemm_int8_ref(c.w.has_bias)->run(c.args(out.data()));
    for (int64_t m = 0; m < 16; ++m) {
      for (int64_t n = 0; n < 32; ++n) {
        double ref = 0, mag = 0;
        for (int64_t i = 0; i < k; ++i) {
          const double p = static_cast<double>(c.w.at(n, i)) * c.x[m * k + i];
          ref += p, mag += std::fabs(p);
        }
        if (n >= rows) {
          ASSERT_EQ(out[m * os + n], 0.0f);
        }
        ASSERT_NEAR(out[m * os + n], ref, 1e-5 * mag + 1e-7) << "token " << m << " row " << n;
      }
      EXPECT_EQ(out[m * os + 32], -1.0f);  // columns past the panels untouched
    }
  }
}

TEST(PrefillKernel, SplitKAccumulatesToTheSameBits) {
  const TileCase c = make_tile(GGMLType::Q4_K, 32, 512);  // 16 blocks
  const auto twin = create_gemm_int8_ref(true);
  std::vector<float> whole(16 * c.out_stride(), 0.0f), split(whole.size(), 7.0f);
  twin->run(c.args(whole.data()));
  twin->run(c.args(split.data(), 0, 5, false));
  twin->run(c.args(split.data(), 5, 11, true));
  for (int64_t m = 0; m < 16; ++m) {
    for (int64_t n = 0; n < 32; ++n) {
      ASSERT_EQ(split[m * c.out_stride() + n], whole[m * c.out_stride() + n]) << m << "," << n;
    }
  }
}

// AMX vs twin bit for bit: even and odd block counts (the kernel pairs blocks), 1 to 4
// panels, a split K continued with accumulate.
TEST(PrefillKernel, AmxMatchesTwinBitForBit) {
  const CpuIsa cpu = detect_cpu_isa();
  struct Case { bool bias; int64_t rows, k, split; };
  for (const Case& cs : {Case{false, 32, 512, 0}, Case{true, 32, 512, 0}, Case{true, 16, 96, 0},
                         Case{true, 64, 800, 7}, Case{false, 48, 256, 1}}) {
    SCOPED_TRACE(testing::Message() << "rows " << cs.rows << " k " << cs.k << " split "
                                    << cs.split);
    auto amx = create_gemm_int8_amx(cs.bias, cpu);
    if (!amx.has_value()) GTEST_SKIP() << "no AMX kernel here: " << amx.status().message();
    const GGMLType type = !cs.bias ? GGMLType::Q8_0 : cs.k % 256 == 0 ? GGMLType::Q4_K
                                                                        : GGMLType::Q4_1;
    const TileCase c = make_tile(type, cs.rows, cs.k);
    const int64_t os = c.out_stride(), kb = c.w.blocks;
    std::vector<float> a(16 * os, -3.0f), b(16 * os, 1.0f);
    auto twin = create_gemm_int8_ref(cs.bias);
    if (cs.split == 0) {
      (*amx)->run(c.args(a.data()));
      twin->run(c.args(b.data()));
    } else {
      (*amx)->run(c.args(a.data(), 0, cs.split, false));
      (*amx)->run(c.args(a.data(), cs.split, kb - cs.split, true));
      twin->run(c.args(b.data()));
    }
    for (int64_t m = 0; m < 16; ++m) {
      for (int64_t n = 0; n < c.w.panels * 16; ++n) {
        ASSERT_EQ(a[m * os + n], b[m * os + n]) << m << "," << n;
      }
      EXPECT_EQ(a[m * os + c.w.panels * 16], -3.0f);
    }
  }
}

}  // namespace
}  // namespace ktx::cpu
