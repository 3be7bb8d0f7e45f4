// Pieces of probe_host, one file each (topology, memory bandwidth, GPUs), declared here so
// tests and tools can run one piece alone (e.g. a bandwidth measurement over a small buffer).
#pragma once

#include <cstdint>
#include <vector>

#include "common/hw/hw_profile.h"

namespace ktx {

// Sockets, cores, hardware threads, NUMA nodes and cache sizes (hwloc when built with it,
// else /sys and sysconf). Leaves model_name and isa alone.
Status probe_topology(CpuInfo* cpu);

// Streaming read bandwidth in GB/s (1e9 bytes/s): `threads` threads each sum 64-bit words of
// their share of a `buffer_bytes` buffer; the best pass over the whole buffer counts. Passes
// repeat until `seconds` have elapsed (at least two: the first may still fault pages in).
Expected<double> measure_read_bandwidth(uint64_t buffer_bytes, int threads, double seconds,
                                        bool use_avx2);

// The buffer probe_host measures with: 1 GiB or 1/8 of RAM, whichever is smaller, so it is far
// larger than any L3 while leaving small hosts room.
uint64_t bandwidth_buffer_bytes(uint64_t total_ram_bytes);

// Peak arithmetic rates of the matrix and vector units this CPU has (ComputePeaks), `threads`
// threads running register-only loops for about `seconds` in all. Kinds the ISA lacks stay 0.
ComputePeaks measure_compute_peaks(int threads, const CpuIsa& isa, double seconds);

// GPUs visible through the CUDA runtime; an empty list when built without CUDA, when no
// driver is installed or when there is no device. Other CUDA failures are errors.
Expected<std::vector<GpuInfo>> probe_gpus();

}  // namespace ktx
