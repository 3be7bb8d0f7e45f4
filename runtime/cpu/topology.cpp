// Topology discovery and page-node queries: see topology.h. hwloc knows hybrid cores and odd
// firmware tables best; /sys gives the same facts on any Linux; the flat fallback keeps the
// pool working (unpinned-quality placement) anywhere else. Every source is intersected with
// sched_getaffinity so a pool never pins onto a CPU the process may not use.
#include "runtime/cpu/topology.h"

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#if KTX_HAVE_HWLOC
#include <hwloc.h>
#endif

namespace ktx::cpu {
namespace {

std::set<int> allowed_cpus() {
  std::set<int> out;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) out.insert(c);
    }
  }
  if (out.empty()) {
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    for (long c = 0; c < std::max(1L, n); ++c) out.insert(int(c));
  }
  return out;
}

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

#if KTX_HAVE_HWLOC
// Cores with at least one allowed PU; node from the core's nodeset.
bool from_hwloc(const std::set<int>& allowed, Topology* topo) {
  hwloc_topology_t t;
  if (hwloc_topology_init(&t) != 0) return false;
  if (hwloc_topology_load(t) != 0) {
    hwloc_topology_destroy(t);
    return false;
  }
  const int n = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
  for (int i = 0; i < n; ++i) {
    hwloc_obj_t core = hwloc_get_obj_by_type(t, HWLOC_OBJ_CORE, unsigned(i));
    CpuCore c;
    unsigned pu;
    hwloc_bitmap_foreach_begin(pu, core->cpuset) {
      if (allowed.count(int(pu))) c.pus.push_back(int(pu));
    }
    hwloc_bitmap_foreach_end();
    if (c.pus.empty()) continue;
    const int node = core->nodeset ? hwloc_bitmap_first(core->nodeset) : 0;
    c.node = std::max(0, node);
    topo->cores.push_back(std::move(c));
  }
  hwloc_topology_destroy(t);
  topo->source = "hwloc";
  return !topo->cores.empty();
}
#endif

// Node of each CPU from /sys/devices/system/node/nodeN/cpulist (absent on non-NUMA kernels).
std::map<int, int> sysfs_cpu_nodes() {
  std::map<int, int> out;
  std::error_code ec;
  const std::filesystem::path dir("/sys/devices/system/node");
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("node", 0) != 0 || name.size() == 4) continue;
    if (name.find_first_not_of("0123456789", 4) != std::string::npos) continue;
    auto cpus = parse_cpu_list(read_line(e.path().string() + "/cpulist"));
    if (!cpus) continue;
    for (int c : *cpus) out[c] = std::stoi(name.substr(4));
  }
  return out;
}

// Cores keyed by (package, core_id) from /sys/devices/system/cpu/cpuN/topology.
bool from_sysfs(const std::set<int>& allowed, Topology* topo) {
  const std::map<int, int> nodes = sysfs_cpu_nodes();
  std::map<std::pair<int, int>, CpuCore> cores;
  for (int cpu : allowed) {
    const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    const std::string core_id = read_line(base + "core_id");
    const std::string pkg = read_line(base + "physical_package_id");
    if (core_id.empty() || pkg.empty()) return false;
    CpuCore& c = cores[{std::atoi(pkg.c_str()), std::atoi(core_id.c_str())}];
    const auto it = nodes.find(cpu);
    c.node = it == nodes.end() ? 0 : it->second;
    c.pus.push_back(cpu);
  }
  for (auto& [key, c] : cores) topo->cores.push_back(std::move(c));
  topo->source = "sysfs";
  return !topo->cores.empty();
}

}  // namespace

int Topology::n_pus() const {
  int n = 0;
  for (const auto& c : cores) n += int(c.pus.size());
  return n;
}

std::vector<int> Topology::pin_order(bool smt) const {
  // Round-robin over nodes, within a node in core order; then siblings the same way.
  std::vector<std::vector<const CpuCore*>> by_node(size_t(std::max(1, n_nodes)));
  for (const auto& c : cores) by_node[size_t(c.node)].push_back(&c);
  std::vector<int> out;
  size_t max_pus = 1;
  for (const auto& c : cores) max_pus = std::max(max_pus, c.pus.size());
  for (size_t level = 0; level < (smt ? max_pus : 1); ++level) {
    for (size_t i = 0;; ++i) {
      bool any = false;
      for (const auto& list : by_node) {
        if (i >= list.size()) continue;
        any = true;
        if (level < list[i]->pus.size()) out.push_back(list[i]->pus[level]);
      }
      if (!any) break;
    }
  }
  return out;
}

int Topology::node_of_cpu(int cpu) const {
  for (const auto& c : cores) {
    if (std::find(c.pus.begin(), c.pus.end(), cpu) != c.pus.end()) return c.node;
  }
  return 0;
}

Expected<std::vector<int>> parse_cpu_list(const std::string& text) {
  std::vector<int> out;
  size_t pos = 0;
  auto bad = [&] { return Error("cpu list \"{}\": expected \"N\" or \"A-B\" items separated by "
                                "commas", text); };
  while (pos < text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(pos, end - pos);
    pos = end + 1;
    if (item.empty() || item.find_first_not_of("0123456789-") != std::string::npos) return bad();
    const size_t dash = item.find('-');
    const int a = std::atoi(item.substr(0, dash).c_str());
    const int b = dash == std::string::npos ? a : std::atoi(item.substr(dash + 1).c_str());
    if (dash == 0 || dash + 1 == item.size() || b < a || b > 1 << 20) return bad();
    for (int c = a; c <= b; ++c) out.push_back(c);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Expected<Topology> discover_topology() {
  const std::set<int> allowed = allowed_cpus();
  Topology topo;
  bool ok = false;
#if KTX_HAVE_HWLOC
  ok = from_hwloc(allowed, &topo);
#endif
  if (!ok) {
    topo = Topology{};
    ok = from_sysfs(allowed, &topo);
  }
  if (!ok) {
    topo = Topology{};
    for (int cpu : allowed) topo.cores.push_back(CpuCore{0, {cpu}});
    topo.source = "flat";
  }
  if (topo.cores.empty()) return Error("topology: no usable CPU in this process's affinity mask");
  std::stable_sort(topo.cores.begin(), topo.cores.end(), [](const CpuCore& a, const CpuCore& b) {
    return a.node != b.node ? a.node < b.node : a.pus.front() < b.pus.front();
  });
  for (const auto& c : topo.cores) topo.n_nodes = std::max(topo.n_nodes, c.node + 1);
  return topo;
}

const Topology& host_topology() {
  static const Topology topo = [] {
    auto t = discover_topology();
    return t ? *t : Topology{{CpuCore{0, {0}}}, 1, "flat"};
  }();
  return topo;
}

int memory_node_of(const void* addr) {
  if (host_topology().n_nodes <= 1) return 0;
  const long page = sysconf(_SC_PAGESIZE);
  void* p = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(addr) & ~uintptr_t(page - 1));
  int status = -1;
  // move_pages with no target nodes only reports where each page is.
  if (syscall(SYS_move_pages, 0, 1UL, &p, nullptr, &status, 0) != 0) return -1;
  return status >= 0 ? status : -1;
}

int memory_node(const void* addr, size_t bytes, int max_samples) {
  if (host_topology().n_nodes <= 1 || bytes == 0) return 0;
  std::map<int, int> votes;
  const int n = std::max(1, max_samples);
  for (int i = 0; i < n; ++i) {
    const size_t off = bytes / size_t(n) * size_t(i);
    const int node = memory_node_of(static_cast<const char*>(addr) + off);
    if (node >= 0) ++votes[node];
  }
  int best = 0, best_votes = 0;
  for (const auto& [node, v] : votes) {
    if (v > best_votes) best = node, best_votes = v;
  }
  return best;
}

std::vector<NodeRows> rows_by_node(const void* base, int64_t n_rows, size_t row_bytes,
                                   int max_samples) {
  std::vector<NodeRows> out;
  if (n_rows <= 0) return out;
  if (host_topology().n_nodes <= 1) return {NodeRows{0, 0, n_rows}};
  const int64_t step = std::max<int64_t>(1, n_rows / std::max(1, max_samples));
  for (int64_t r = 0; r < n_rows; r += step) {
    const int node = std::max(0, memory_node_of(static_cast<const char*>(base) + r * row_bytes));
    const int64_t end = std::min(n_rows, r + step);
    if (!out.empty() && out.back().node == node) {
      out.back().end = end;
    } else {
      out.push_back(NodeRows{node, r, end});
    }
  }
  return out;
}

}  // namespace ktx::cpu
