// GPU code as the runtime sees it: a cubin (made by ktc with NVRTC and carried in the plan, or
// by a test) loaded through the CUDA runtime's library API, its kernels looked up by name and
// launched with cudaLaunchKernel. No libcuda link and no NVRTC here, so ktx-run still starts
// on hosts without a GPU; device buffers as RAII.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/util/status.h"

namespace ktx::cuda {

// CUDA devices this process can use (0 without a driver or device: never an error).
int device_count();
// "sm_90a" / "sm_89" of device `dev` (the arch string hw profiles and plans use).
Expected<std::string> device_arch(int dev);

class Library {
 public:
  // Loads a cubin image. Errors name CUDA's reason (wrong arch, corrupt image, no device).
  static Expected<Library> load(const std::vector<uint8_t>& cubin);
  Library() = default;
  Library(Library&& o) noexcept : lib_(o.lib_) { o.lib_ = nullptr; }
  Library& operator=(Library&& o) noexcept;
  ~Library();

  // Error naming the kernel when the image lacks it.
  Expected<cudaKernel_t> kernel(const std::string& name) const;

 private:
  cudaLibrary_t lib_ = nullptr;
};

// Whether launches carry the programmatic-stream-serialization attribute (on sm_90+ devices,
// unless KTX_CUDA_PDL=0 or KTX_CUDA_DEBUG): each kernel may then be scheduled while the one
// before it still runs, and waits in KTX_PDL_ENTER (kernels/common/pdl.cuh) for its results.
bool pdl_enabled();
// cudaLaunchKernel on a library kernel; args are the kernel's parameters in order (pointers
// to them, as CUDA takes them). Under KTX_CUDA_DEBUG=1 also synchronizes and checks.
Status launch(cudaKernel_t k, dim3 grid, dim3 block, void** args, size_t smem = 0,
              cudaStream_t stream = nullptr);

// Device memory of n bytes, freed on destruction.
class DeviceBuffer {
 public:
  static Expected<DeviceBuffer> alloc(size_t bytes);
  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  ~DeviceBuffer();
  void* get() const { return p_; }
  size_t size() const { return n_; }
  template <typename T> T* as() const { return static_cast<T*>(p_); }
  Status upload(const void* src, size_t bytes);
  Status download(void* dst, size_t bytes) const;

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace ktx::cuda
