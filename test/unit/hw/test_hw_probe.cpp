// probe_host on the machine running the tests: values must be plausible and self-consistent
// (they cannot be compared with fixed numbers, which differ per host), and the ISA flags must
// obey the implications real CPUs guarantee.
#include <gtest/gtest.h>

#include <thread>

#include "common/hw/cpu_features.h"
#include "common/hw/hw_probe_internal.h"
#include "common/hw/hw_profile.h"

namespace ktx {
namespace {

TEST(HwProbe, ProbeHostIsSane) {
  // A small buffer keeps the test fast; probe_host(double) uses the full-size one.
  ProbeOptions opts;
  opts.bw_seconds = 0.01;
  opts.bw_buffer_bytes = 64ull << 20;
  auto p = probe_host(opts);
  ASSERT_TRUE(p.has_value()) << p.status().message();
  EXPECT_GE(p->cpu.physical_cores, 1);
  EXPECT_GE(p->cpu.logical_cpus, p->cpu.physical_cores);
  EXPECT_GE(p->cpu.sockets, 1);
  EXPECT_GE(p->cpu.numa_nodes, 1);
  EXPECT_LE(unsigned(p->cpu.logical_cpus), std::max(1u, std::thread::hardware_concurrency()) * 8);
  EXPECT_GT(p->memory.total_bytes, 0u);
  EXPECT_GT(p->memory.read_bw_gbs, 0.0);
  EXPECT_LT(p->memory.read_bw_gbs, 1e5);  // 100 TB/s would be a timing bug
  for (const GpuInfo& g : p->gpus) {
    EXPECT_EQ(g.arch.rfind("sm_", 0), 0u) << g.arch;
    EXPECT_GT(g.memory_bytes, 0u);
  }
  // What probe writes, load reads back unchanged.
  auto back = HwProfile::from_toml_string(p->to_toml(), "probed.toml");
  ASSERT_TRUE(back.has_value()) << back.status().message() << "\n" << p->to_toml();
  EXPECT_TRUE(*back == *p);
}

TEST(HwProbe, IsaImplicationsHold) {
  const CpuIsa isa = detect_cpu_isa();
  // Every CPU with these features also has the ones they build on.
  if (isa.avx512f) {
    EXPECT_TRUE(isa.avx2 && isa.fma);
  }
  if (isa.avx512bw || isa.avx512vl || isa.avx512_vnni || isa.avx512_bf16) {
    EXPECT_TRUE(isa.avx512f);
  }
  if (isa.avx_vnni) {
    EXPECT_TRUE(isa.avx2);
  }
  if (isa.amx_int8 || isa.amx_bf16) {
    EXPECT_TRUE(isa.amx_tile);
  }
  if (isa.amx_tile) {
    EXPECT_TRUE(isa.avx512f);
  }
  // names() lists exactly the set flags, in all_names() order.
  std::vector<std::string> expect;
  for (const auto& n : CpuIsa::all_names()) {
    if (*isa.flag(n)) expect.push_back(n);
  }
  EXPECT_EQ(isa.names(), expect);
  EXPECT_EQ(isa.flag("sse9"), nullptr);
}

TEST(HwProbe, IsaAgreesWithCompilerBuiltin) {
  // GCC's own CPUID probe (no OS-state check) must include everything we report.
  __builtin_cpu_init();
  const CpuIsa isa = detect_cpu_isa();
  if (isa.avx2) {
    EXPECT_TRUE(__builtin_cpu_supports("avx2"));
  }
  if (isa.fma) {
    EXPECT_TRUE(__builtin_cpu_supports("fma"));
  }
  if (isa.avx512f) {
    EXPECT_TRUE(__builtin_cpu_supports("avx512f"));
  }
  if (isa.avx512bw) {
    EXPECT_TRUE(__builtin_cpu_supports("avx512bw"));
  }
  if (isa.avx512_vnni) {
    EXPECT_TRUE(__builtin_cpu_supports("avx512vnni"));
  }
}

TEST(HwProbe, BandwidthScalarAndAvx2PathsBothMeasure) {
  const uint64_t bytes = 32ull << 20;
  auto scalar = measure_read_bandwidth(bytes, 2, 0.0, /*use_avx2=*/false);
  ASSERT_TRUE(scalar.has_value()) << scalar.status().message();
  EXPECT_GT(*scalar, 0.0);
  if (detect_cpu_isa().avx2) {
    auto vec = measure_read_bandwidth(bytes, 2, 0.0, /*use_avx2=*/true);
    ASSERT_TRUE(vec.has_value()) << vec.status().message();
    EXPECT_GT(*vec, 0.0);
  }
  auto bad = measure_read_bandwidth(1000, 4, 0.0, false);
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.status().message().find("too small for 4 threads"), std::string::npos);
  EXPECT_EQ(bandwidth_buffer_bytes(64ull << 30), 1ull << 30);
  EXPECT_EQ(bandwidth_buffer_bytes(4ull << 30), 512ull << 20);
}

}  // namespace
}  // namespace ktx
