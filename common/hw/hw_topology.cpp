// CPU topology and caches: hwloc when the build has it (it knows about hybrid cores, SNC
// modes and odd firmware), else Linux /sys plus sysconf. Physical cores matter most: expert
// kernels run one thread per physical core, and hyperthreads only add contention on DRAM.
#include <unistd.h>

#include <fstream>
#include <set>
#include <string>
#include <utility>

#include "common/hw/hw_probe_internal.h"

#if KTX_HAVE_HWLOC
#include <hwloc.h>
#endif

namespace ktx {
namespace {

#if KTX_HAVE_HWLOC
int count_type(hwloc_topology_t topo, hwloc_obj_type_t type) {
  const int n = hwloc_get_nbobjs_by_type(topo, type);
  return n > 0 ? n : 0;
}

uint64_t first_cache_size(hwloc_topology_t topo, hwloc_obj_type_t type) {
  hwloc_obj_t obj = hwloc_get_obj_by_type(topo, type, 0);
  return obj && obj->attr ? obj->attr->cache.size : 0;
}

Status probe_hwloc(CpuInfo* cpu) {
  hwloc_topology_t topo;
  if (hwloc_topology_init(&topo) != 0) return Error("hwloc: topology init failed");
  if (hwloc_topology_load(topo) != 0) {
    hwloc_topology_destroy(topo);
    return Error("hwloc: topology load failed");
  }
  cpu->sockets = std::max(1, count_type(topo, HWLOC_OBJ_PACKAGE));
  cpu->physical_cores = std::max(1, count_type(topo, HWLOC_OBJ_CORE));
  cpu->logical_cpus = std::max(cpu->physical_cores, count_type(topo, HWLOC_OBJ_PU));
  cpu->numa_nodes = std::max(1, count_type(topo, HWLOC_OBJ_NUMANODE));
  cpu->l1d_bytes = first_cache_size(topo, HWLOC_OBJ_L1CACHE);
  cpu->l2_bytes = first_cache_size(topo, HWLOC_OBJ_L2CACHE);
  uint64_t l3 = 0;
  for (int i = 0; i < count_type(topo, HWLOC_OBJ_L3CACHE); ++i) {
    hwloc_obj_t obj = hwloc_get_obj_by_type(topo, HWLOC_OBJ_L3CACHE, unsigned(i));
    if (obj && obj->attr) l3 += obj->attr->cache.size;
  }
  cpu->l3_bytes = l3;
  hwloc_topology_destroy(topo);
  return Status::ok();
}
#endif

// Reads a small /sys file; "" when absent.
std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

// "48K" / "2048K" / "32M" as in /sys/devices/system/cpu/cpu0/cache/index*/size.
uint64_t parse_size(const std::string& s) {
  if (s.empty()) return 0;
  uint64_t v = 0;
  size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') v = v * 10 + uint64_t(s[i++] - '0');
  if (i < s.size() && s[i] == 'K') v <<= 10;
  if (i < s.size() && s[i] == 'M') v <<= 20;
  return v;
}

Status probe_sysfs(CpuInfo* cpu) {
  const long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
  cpu->logical_cpus = n_cpu > 0 ? int(n_cpu) : 1;
  std::set<std::pair<std::string, std::string>> cores;  // (package, core id)
  std::set<std::string> packages;
  for (int i = 0; i < cpu->logical_cpus; ++i) {
    const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(i) + "/topology/";
    const std::string pkg = read_line(base + "physical_package_id");
    const std::string core = read_line(base + "core_id");
    if (pkg.empty() || core.empty()) continue;
    packages.insert(pkg);
    cores.insert({pkg, core});
  }
  cpu->physical_cores = cores.empty() ? cpu->logical_cpus : int(cores.size());
  cpu->sockets = packages.empty() ? 1 : int(packages.size());
  int nodes = 0;
  while (!read_line("/sys/devices/system/node/node" + std::to_string(nodes) + "/cpulist").empty())
    ++nodes;
  cpu->numa_nodes = std::max(1, nodes);
  for (int idx = 0; idx < 8; ++idx) {
    const std::string base = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(idx) + "/";
    const std::string level = read_line(base + "level");
    if (level.empty()) break;
    const std::string type = read_line(base + "type");
    const uint64_t size = parse_size(read_line(base + "size"));
    if (level == "1" && type == "Data") cpu->l1d_bytes = size;
    if (level == "2") cpu->l2_bytes = size;
    // One L3 per package is the common case; hwloc handles the rest when available.
    if (level == "3") cpu->l3_bytes = size * uint64_t(cpu->sockets);
  }
  return Status::ok();
}

}  // namespace

Status probe_topology(CpuInfo* cpu) {
#if KTX_HAVE_HWLOC
  if (probe_hwloc(cpu).is_ok()) return Status::ok();
#endif
  return probe_sysfs(cpu);
}

}  // namespace ktx
