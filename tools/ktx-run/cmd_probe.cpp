// `ktx-run probe`: measure this machine and write its hardware profile (host.toml), the input
// `ktc plan --hw` needs. A human summary and progress go to stderr so stdout can carry the TOML
// when no -o is given.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "common/hw/hw_profile.h"
#include "tools/ktx-run/commands.h"

namespace ktx::cli {
namespace {

void print_summary(const HwProfile& p) {
  const auto gib = [](uint64_t b) { return double(b) / double(1ull << 30); };
  const std::vector<std::string> isa = p.cpu.isa.names();
  std::string isa_list;
  for (const auto& n : isa) isa_list += (isa_list.empty() ? "" : " ") + n;
  std::fprintf(stderr, "host:    %s\n", p.hostname.c_str());
  std::fprintf(stderr, "cpu:     %s\n", p.cpu.model_name.c_str());
  std::fprintf(stderr, "         %d socket(s), %d cores, %d threads, %d NUMA node(s)\n",
               p.cpu.sockets, p.cpu.physical_cores, p.cpu.logical_cpus, p.cpu.numa_nodes);
  std::fprintf(stderr, "         L1d %llu KiB/core, L2 %llu KiB/core, L3 %llu MiB total\n",
               (unsigned long long)(p.cpu.l1d_bytes >> 10),
               (unsigned long long)(p.cpu.l2_bytes >> 10),
               (unsigned long long)(p.cpu.l3_bytes >> 20));
  std::fprintf(stderr, "isa:     %s\n", isa_list.empty() ? "(none of the known)" : isa_list.c_str());
  const ComputePeaks& pk = p.cpu.peaks;
  std::fprintf(stderr, "peaks:   AMX int8 %.1f TOP/s, AMX bf16 %.1f TFLOP/s, AVX-512 FMA %.2f TFLOP/s, AVX2 FMA %.2f TFLOP/s\n",
               pk.amx_int8_tops, pk.amx_bf16_tflops, pk.avx512_fma_tflops, pk.avx2_fma_tflops);
  std::fprintf(stderr, "memory:  %.1f GiB, read %.1f GB/s\n", gib(p.memory.total_bytes),
               p.memory.read_bw_gbs);
  if (p.gpus.empty()) std::fprintf(stderr, "gpus:    none\n");
  for (size_t i = 0; i < p.gpus.size(); ++i) {
    const GpuInfo& g = p.gpus[i];
    std::fprintf(stderr, "gpu %zu:   %s (%s), %.1f GiB, %.0f GB/s, PCIe %.1f GB/s\n", i,
                 g.name.c_str(), g.arch.c_str(), gib(g.memory_bytes), g.mem_bw_gbs,
                 g.pcie_bw_gbs);
  }
}

}  // namespace

int cmd_probe(int argc, char** argv) {
  CLI::App app{"Probe this machine and write its hardware profile (host.toml)", "ktx-run probe"};
  std::string out_path;
  ProbeOptions opts;
  app.add_option("-o,--output", out_path, "write the profile here (default: stdout)");
  app.add_option("--bw-seconds", opts.bw_seconds, "time for the memory bandwidth measurement")
      ->check(CLI::Range(0.0, 60.0))
      ->capture_default_str();
  app.add_option("--compute-seconds", opts.compute_seconds,
                 "time for the compute-peak loops (AMX, AVX-512, AVX2; 0 skips them)")
      ->check(CLI::Range(0.0, 60.0))
      ->capture_default_str();
  app.add_flag("!--no-gpu", opts.gpus, "do not query GPUs");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fail(e.what());
    return 1;
  }
  std::fprintf(stderr, "probing CPU, topology and GPUs; measuring memory bandwidth (%.1f s) and compute peaks (%.1f s)...\n",
               opts.bw_seconds, opts.compute_seconds);
  auto profile = probe_host(opts);
  if (!profile) {
    fail(profile.status().message());
    return 1;
  }
  print_summary(*profile);
  if (out_path.empty()) {
    std::fputs(profile->to_toml().c_str(), stdout);
    return 0;
  }
  if (Status st = profile->save(out_path); !st) {
    fail(st.message());
    return 1;
  }
  std::fprintf(stderr, "wrote %s\n", out_path.c_str());
  return 0;
}

}  // namespace ktx::cli
