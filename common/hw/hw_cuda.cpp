// GPU discovery through the CUDA runtime (statically linked cudart, never libcuda at link
// time, so ktx-run still starts on hosts without a driver). A host without a driver or device
// simply has zero GPUs. The PCIe number is a short pinned host-to-device copy measurement,
// because the bandwidth the link actually delivers is what the planner needs.
#include <algorithm>
#include <chrono>

#include "common/hw/hw_probe_internal.h"

#if KTX_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace ktx {
namespace {

#if KTX_HAVE_CUDA
// "sm_90a" for 9.0 (and later majors: their arch-specific features need the 'a' target),
// "sm_89" for 8.9.
std::string arch_string(int major, int minor) {
  return fmt::format("sm_{}{}{}", major, minor, major >= 9 ? "a" : "");
}

// Best of a few 64 MiB pinned host -> device copies, GB/s; 0 when any step fails (the value
// is then "unknown", not an error: a profile is still useful without it).
double measure_pcie_gbs() {
  constexpr size_t kBytes = 64ull << 20;
  void* host = nullptr;
  void* dev = nullptr;
  double best = 0;
  if (cudaMallocHost(&host, kBytes) == cudaSuccess && cudaMalloc(&dev, kBytes) == cudaSuccess) {
    for (int i = 0; i < 4; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      if (cudaMemcpy(dev, host, kBytes, cudaMemcpyHostToDevice) != cudaSuccess) break;
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (i > 0 && s > 0) best = std::max(best, double(kBytes) / s / 1e9);  // i = 0 warms up
    }
  }
  if (dev) cudaFree(dev);
  if (host) cudaFreeHost(host);
  cudaGetLastError();  // clear a sticky-free error state left by a failed step
  return best;
}

Expected<GpuInfo> probe_device(int dev) {
  cudaDeviceProp prop{};
  cudaError_t e = cudaGetDeviceProperties(&prop, dev);
  if (e != cudaSuccess) {
    return Error("cuda: cudaGetDeviceProperties({}) failed: {}", dev, cudaGetErrorString(e));
  }
  GpuInfo g;
  g.name = prop.name;
  g.arch = arch_string(prop.major, prop.minor);
  g.memory_bytes = prop.totalGlobalMem;
  int clock_khz = 0, bus_bits = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, dev) == cudaSuccess &&
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev) == cudaSuccess) {
    // Double data rate: two transfers per clock over bus_bits wires.
    g.mem_bw_gbs = 2.0 * double(clock_khz) * 1e3 * double(bus_bits) / 8.0 / 1e9;
  }
  if (cudaSetDevice(dev) == cudaSuccess) g.pcie_bw_gbs = measure_pcie_gbs();
  return g;
}
#endif

}  // namespace

Expected<std::vector<GpuInfo>> probe_gpus() {
  std::vector<GpuInfo> gpus;
#if KTX_HAVE_CUDA
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ||
      e == cudaErrorInitializationError || e == cudaErrorCompatNotSupportedOnDevice) {
    cudaGetLastError();
    return gpus;  // no usable driver or device: a CPU-only host, not an error
  }
  if (e != cudaSuccess) return Error("cuda: cudaGetDeviceCount failed: {}", cudaGetErrorString(e));
  for (int dev = 0; dev < n; ++dev) {
    KTX_ASSIGN_OR_RETURN(GpuInfo g, probe_device(dev));
    gpus.push_back(std::move(g));
  }
#endif
  return gpus;
}

}  // namespace ktx
