// The streaming cost model of --kt-stream (compiler/passes/StreamCost.h): the rates it takes
// from a profile, the crossover call size (exact, and moving the right way with PCIe
// bandwidth), no streaming where the copy can never pay, and the chunk falling back to a
// smaller call size (or to nothing) when the VRAM left is small.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "compiler/passes/StreamCost.h"

namespace ktx::kt {
namespace {

// A DeepSeek-V3 routed-expert layer at Q4_K (144 bytes per 256 elements).
StreamLayer dsv3_layer(int64_t layer = 3) {
  StreamLayer l{"blk." + std::to_string(layer) + ".ffn_moe", layer, 256, 8, 7168, 2048, 0};
  l.bytes = 3ull * 7168 * 2048 * 256 / 256 * 144;
  return l;
}

// The lent host: Xeon with AMX (peak 50 TOP/s), 150 GB/s DRAM, H100 on PCIe.
HwProfile spr_h100(double pcie_gbs, double gemm_tflops = 0) {
  HwProfile hw;
  hw.cpu.isa.avx2 = hw.cpu.isa.fma = hw.cpu.isa.f16c = true;
  hw.cpu.isa.avx512f = hw.cpu.isa.avx512bw = hw.cpu.isa.avx512vl = hw.cpu.isa.avx512_vnni = true;
  hw.cpu.isa.amx_tile = hw.cpu.isa.amx_int8 = hw.cpu.isa.amx_bf16 = true;
  hw.cpu.peaks.amx_int8_tops = 50;
  hw.memory.read_bw_gbs = 150;
  hw.gpus.push_back({"NVIDIA H100", "sm_90a", 80ull << 30, 3352, pcie_gbs, gemm_tflops});
  return hw;
}

TEST(StreamCost, RatesFromTheProfile) {
  StreamRates r = stream_rates(spr_h100(55));
  EXPECT_DOUBLE_EQ(r.pcie_bytes_per_s, 55e9);
  EXPECT_DOUBLE_EQ(r.cpu_ops, 0.08 * 50e12);
  EXPECT_DOUBLE_EQ(r.dram_bytes_per_s, 150e9);
  EXPECT_TRUE(r.gpu_estimated);
  EXPECT_DOUBLE_EQ(r.gpu_flops, 20e12);  // sm_90a's estimate
  r = stream_rates(spr_h100(55, 31.5));
  EXPECT_FALSE(r.gpu_estimated);
  EXPECT_DOUBLE_EQ(r.gpu_flops, 31.5e12);
  EXPECT_EQ(estimated_gemm_tflops("sm_80"), 12);
  EXPECT_EQ(estimated_gemm_tflops("sm_89"), 10);
  EXPECT_EQ(estimated_gemm_tflops("sm_86"), 10);
  // AVX-512 and AVX2 tiers scale their float peaks; an unmeasured peak falls back to 1 TOP/s.
  HwProfile avx512 = spr_h100(55);
  avx512.cpu.isa.amx_tile = avx512.cpu.isa.amx_int8 = false;
  avx512.cpu.peaks.avx512_fma_tflops = 3;
  EXPECT_DOUBLE_EQ(stream_rates(avx512).cpu_ops, 0.5 * 4 * 3e12);
  HwProfile avx2 = avx512;
  avx2.cpu.isa.avx512f = false;
  avx2.cpu.peaks.avx2_fma_tflops = 2;
  EXPECT_DOUBLE_EQ(stream_rates(avx2).cpu_ops, 0.5 * 2 * 2e12);
  avx2.cpu.peaks.avx2_fma_tflops = 0;
  EXPECT_DOUBLE_EQ(stream_rates(avx2).cpu_ops, 1e12);
}

TEST(StreamCost, CrossoverIsTheFirstCallSizeTheGpuWins) {
  const StreamLayer l = dsv3_layer();
  const StreamRates r = stream_rates(spr_h100(55));
  const int64_t n = stream_min_tokens(l, r, 8192);
  ASSERT_GT(n, 1);
  ASSERT_LT(n, 8192);
  EXPECT_LT(gpu_seconds(l, r, n), cpu_seconds(l, r, n));
  EXPECT_GE(gpu_seconds(l, r, n - 1), cpu_seconds(l, r, n - 1));
  // A copy of 6.3 GB at 55 GB/s is 115 ms; the CPU (4 TOP/s) spends that from about 650 tokens.
  EXPECT_GT(n, 500);
  EXPECT_LT(n, 800);
  // A chunk below the crossover: the layer does not stream.
  EXPECT_EQ(stream_min_tokens(l, r, n - 1), 0);
  EXPECT_EQ(stream_min_tokens(l, r, n), n);
}

TEST(StreamCost, CrossoverFallsAsPcieBandwidthRises) {
  const StreamLayer l = dsv3_layer();
  int64_t last = 8193;
  for (double gbs : {12.0, 25.0, 40.0, 55.0, 64.0, 128.0}) {
    const int64_t n = stream_min_tokens(l, stream_rates(spr_h100(gbs)), 8192);
    ASSERT_GT(n, 0) << gbs << " GB/s";
    EXPECT_LT(n, last) << gbs << " GB/s";
    last = n;
  }
}

TEST(StreamCost, NoStreamingWhenTheCopyNeverPays) {
  const StreamLayer l = dsv3_layer();
  EXPECT_EQ(stream_min_tokens(l, stream_rates(spr_h100(0.5)), 8192), 0);
  EXPECT_EQ(stream_min_tokens(l, stream_rates(spr_h100(0)), 8192), 0);  // unknown bandwidth
  // A GPU slower than the CPU's kernels never wins, whatever the bandwidth.
  EXPECT_EQ(stream_min_tokens(l, stream_rates(spr_h100(1000, 1)), 8192), 0);
  const StreamPlan plan = plan_streaming({l}, stream_rates(spr_h100(0.5)),
                                         {0, 0, 100ull << 30, 7168});
  EXPECT_EQ(plan.chunk, 8192);
  EXPECT_EQ(plan.n_streamed, 0);
  EXPECT_EQ(plan.min_tokens, std::vector<int64_t>{0});
  EXPECT_EQ(plan.vram_bytes, 0u);
}

TEST(StreamCost, ChunkFallsBackToWhatFits) {
  const std::vector<StreamLayer> layers = {dsv3_layer(3), dsv3_layer(4)};
  const StreamRates r = stream_rates(spr_h100(55));
  std::vector<const StreamLayer*> ptrs = {&layers[0], &layers[1]};
  const uint64_t at2048 = stream_vram_bytes(ptrs, 2048, 7168);
  const uint64_t at4096 = stream_vram_bytes(ptrs, 4096, 7168);
  const uint64_t at512 = stream_vram_bytes(ptrs, 512, 7168);
  // Two slots of the largest layer, the call buffers and the arena's growth past 512 tokens.
  EXPECT_EQ(at512, 2 * layers[0].bytes + 512ull * 8 * (2 * 7168 + 2 * 2048) * 4);
  EXPECT_EQ(at2048 - at512, 1536ull * 8 * (2 * 7168 + 2 * 2048) * 4 + 8ull * 1536 * 4 * 7168);

  StreamPlan plan = plan_streaming(layers, r, {0, 0, at4096 - 1, 7168});
  EXPECT_EQ(plan.chunk, 2048);
  EXPECT_EQ(plan.n_streamed, 2);
  EXPECT_EQ(plan.vram_bytes, at2048);
  EXPECT_EQ(plan.min_tokens[0], plan.min_tokens[1]);
  EXPECT_GT(plan.min_tokens[0], 0);
  // The context caps the automatic chunk: calls never hold more tokens.
  plan = plan_streaming(layers, r, {0, 1024, 100ull << 30, 7168});
  EXPECT_EQ(plan.chunk, 1024);
  // Not even 512 tokens fit: nothing streams, and the plan says what 512 would need.
  plan = plan_streaming(layers, r, {0, 0, at512 - 1, 7168});
  EXPECT_EQ(plan.chunk, 0);
  EXPECT_EQ(plan.n_streamed, 0);
  EXPECT_EQ(plan.vram_needed, at512);
  EXPECT_EQ(plan.min_tokens, (std::vector<int64_t>{0, 0}));
  // An asked-for chunk is taken as is, or not at all.
  plan = plan_streaming(layers, r, {3000, 0, 100ull << 30, 7168});
  EXPECT_EQ(plan.chunk, 3000);
  plan = plan_streaming(layers, r, {3000, 0, at2048, 7168});
  EXPECT_EQ(plan.chunk, 0);
}

TEST(StreamCost, ExplainNamesEveryLayerAndTheTotals) {
  const std::vector<StreamLayer> layers = {dsv3_layer(3), dsv3_layer(4)};
  const StreamRates r = stream_rates(spr_h100(55));
  const StreamPlan plan = plan_streaming(layers, r, {0, 0, 100ull << 30, 7168});
  const std::string t = explain_streaming(layers, r, plan, plan.chunk, "");
  EXPECT_NE(t.find("PCIe 55 GB/s; GPU GEMM 20 TFLOP/s (estimated from sm_90a"),
            std::string::npos) << t;
  EXPECT_NE(t.find("CPU 4 TOP/s (AMX: 0.08 x amx_int8_tops 50)"), std::string::npos) << t;
  EXPECT_NE(t.find("\n  3        5.91 GiB   115.305    288.822   1443.109  stream from "), std::string::npos) << t;
  EXPECT_NE(t.find(fmt::format("stream from {} tokens", plan.min_tokens[0])), std::string::npos);
  EXPECT_NE(t.find("MoE per 8192-token call: all-CPU"), std::string::npos) << t;
  EXPECT_NE(t.find("(2 of 2 layers streamed)"), std::string::npos) << t;
}

}  // namespace
}  // namespace ktx::kt
