// Where the expert threads run and where the expert weights live. The thread pool pins one
// worker per physical core (hyperthread siblings only add DRAM contention to a memory-bound
// decode), and on a NUMA host each node's workers should read the rows that node's memory
// holds. This file answers both questions: `discover_topology()` lists the usable cores with
// their NUMA node (hwloc when built with it, Linux /sys otherwise, one core per CPU as the last
// resort), restricted to the CPUs this process may run on; `memory_node()` /
// `rows_by_node()` ask the kernel which node holds a range of memory (move_pages), without
// moving or replicating anything.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/util/status.h"

namespace ktx::cpu {

struct CpuCore {
  int node = 0;           // NUMA node of the core (0 on single-node hosts)
  std::vector<int> pus;   // logical CPU ids of the core usable by this process, ascending
};

struct Topology {
  std::vector<CpuCore> cores;  // usable physical cores, ordered by (node, first PU)
  int n_nodes = 1;             // NUMA nodes (highest node id + 1)
  std::string source;          // "hwloc", "sysfs" or "flat" (each CPU its own core, node 0)

  int n_pus() const;
  // The CPUs threads should be pinned to, best first: the first PU of every core with the
  // nodes taken in turn (so a half-sized pool still spreads over every node's memory
  // controllers), then, when `smt` is true, the remaining hyperthread siblings in the same
  // order.
  std::vector<int> pin_order(bool smt) const;
  // The node of a logical CPU; 0 when the CPU is not in the topology.
  int node_of_cpu(int cpu) const;
};

// The topology of this host restricted to the calling thread's affinity mask (taskset,
// cgroups). Errors only if not even one CPU is usable.
Expected<Topology> discover_topology();
// Discovered once per process (first call), then shared.
const Topology& host_topology();

// "0-3,8,10-11" -> {0,1,2,3,8,10,11} (Linux cpulist format). Errors name the text.
Expected<std::vector<int>> parse_cpu_list(const std::string& text);

// NUMA node that holds the page at `addr`; -1 when the page is not yet backed (never
// touched) or the query is unavailable. Single-node hosts answer 0 without a system call.
int memory_node_of(const void* addr);

// The node holding most of the sampled pages of [addr, addr + bytes) (at most `max_samples`
// pages, evenly spaced); 0 when nothing can be told (single node, untouched pages, no
// move_pages).
int memory_node(const void* addr, size_t bytes, int max_samples = 64);

// A run of consecutive rows held by one node.
struct NodeRows {
  int node = 0;
  int64_t begin = 0, end = 0;  // rows [begin, end)
};
// Splits rows [0, n_rows) of a row-major array starting at `base` into runs by the node
// holding each row's first byte (sampled at most `max_samples` times; rows between two samples
// of the same node belong to it). Unknown pages count as node 0. Always covers every row once,
// in order; one run on single-node hosts.
std::vector<NodeRows> rows_by_node(const void* base, int64_t n_rows, size_t row_bytes,
                                   int max_samples = 4096);

}  // namespace ktx::cpu
