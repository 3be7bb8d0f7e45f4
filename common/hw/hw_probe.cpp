// probe_host: assembles a HwProfile of this machine from the pieces in cpu_features.cpp,
// hw_topology.cpp, hw_bandwidth.cpp and hw_cuda.cpp, plus host name, model name and memory
// size. Budgets keep their defaults; `ktx-run probe` writes them so users can edit them.
#include <unistd.h>

#include <fstream>
#include <string>

#include "common/hw/cpu_features.h"
#include "common/hw/hw_probe_internal.h"

namespace ktx {
namespace {

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "";
  return buf;
}

// /proc/cpuinfo's "model name" for CPUs without a CPUID brand string (e.g. non-x86).
std::string proc_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
  }
  return "";
}

Expected<uint64_t> total_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return Error("memory: sysconf cannot tell the RAM size");
  return uint64_t(pages) * uint64_t(page);
}

}  // namespace

Expected<uint64_t> available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return kib * 1024;
  }
  return Error("memory: /proc/meminfo has no MemAvailable line");
}

Expected<HwProfile> probe_host(double bw_seconds) {
  ProbeOptions opts;
  opts.bw_seconds = bw_seconds;
  return probe_host(opts);
}

Expected<HwProfile> probe_host(const ProbeOptions& opts) {
  HwProfile p;
  p.hostname = host_name();
  p.cpu.model_name = cpu_brand_string();
  if (p.cpu.model_name.empty()) p.cpu.model_name = proc_model_name();
  p.cpu.isa = detect_cpu_isa();
  KTX_RETURN_IF_ERROR(probe_topology(&p.cpu));
  KTX_ASSIGN_OR_RETURN(p.memory.total_bytes, total_memory_bytes());
  KTX_ASSIGN_OR_RETURN(
      p.memory.read_bw_gbs,
      measure_read_bandwidth(opts.bw_buffer_bytes ? opts.bw_buffer_bytes
                                                  : bandwidth_buffer_bytes(p.memory.total_bytes),
                             p.cpu.physical_cores, opts.bw_seconds, p.cpu.isa.avx2));
  p.cpu.peaks = measure_compute_peaks(p.cpu.physical_cores, p.cpu.isa, opts.compute_seconds);
  if (opts.gpus) {
    KTX_ASSIGN_OR_RETURN(p.gpus, probe_gpus());
  }
  return p;
}

}  // namespace ktx
