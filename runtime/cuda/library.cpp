// runtime/cuda/library.h and cuda_check.h.
#include "runtime/cuda/library.h"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>

#include "runtime/cuda/cuda_check.h"

namespace ktx::cuda {

Status cuda_error(cudaError_t err, const char* file, int line, const char* call) {
  // Paths relative to the repository root read better than the build's absolute ones.
  const char* rel = std::strstr(file, "runtime/");
  return Error("{}:{}: {} failed: {} ({})", rel ? rel : file, line, call, cudaGetErrorString(err),
               cudaGetErrorName(err));
}

bool cuda_debug() {
  static const bool on = [] {
    const char* v = std::getenv("KTX_CUDA_DEBUG");
    return v && std::strcmp(v, "1") == 0;
  }();
  return on;
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver / no device: clear the sticky error, report none
    return 0;
  }
  return n;
}

Expected<std::string> device_arch(int dev) {
  int major = 0, minor = 0;
  KTX_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  KTX_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  return fmt::format("sm_{}{}{}", major, minor, major >= 9 ? "a" : "");
}

Expected<Library> Library::load(const std::vector<uint8_t>& cubin) {
  if (cubin.empty()) return Error("cuda: empty GPU code image");
  Library l;
  KTX_CUDA_RETURN_IF_ERROR(cudaLibraryLoadData(&l.lib_, cubin.data(), nullptr, nullptr, 0,
                                               nullptr, nullptr, 0));
  return l;
}

Library& Library::operator=(Library&& o) noexcept {
  if (this != &o) {
    if (lib_) cudaLibraryUnload(lib_);
    lib_ = o.lib_;
    o.lib_ = nullptr;
  }
  return *this;
}

Library::~Library() {
  if (lib_) cudaLibraryUnload(lib_);
}

Expected<cudaKernel_t> Library::kernel(const std::string& name) const {
  cudaKernel_t k = nullptr;
  const cudaError_t err = cudaLibraryGetKernel(&k, lib_, name.c_str());
  if (err != cudaSuccess) {
    cudaGetLastError();
    return Error("cuda: the GPU code image has no kernel '{}' ({})", name, cudaGetErrorString(err));
  }
  return k;
}

bool pdl_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("KTX_CUDA_PDL");
    if ((v && std::strcmp(v, "0") == 0) || cuda_debug()) return false;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return major >= 9;
  }();
  return on;
}

Status launch(cudaKernel_t k, dim3 grid, dim3 block, void** args, size_t smem, cudaStream_t stream) {
  if (pdl_enabled()) {
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    KTX_CUDA_RETURN_IF_ERROR(cudaLaunchKernelExC(&cfg, reinterpret_cast<const void*>(k), args));
    return Status::ok();
  }
  KTX_CUDA_RETURN_IF_ERROR(
      cudaLaunchKernel(reinterpret_cast<const void*>(k), grid, block, args, smem, stream));
  if (cuda_debug()) KTX_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return Status::ok();
}

Expected<DeviceBuffer> DeviceBuffer::alloc(size_t bytes) {
  DeviceBuffer b;
  KTX_CUDA_RETURN_IF_ERROR(cudaMalloc(&b.p_, bytes));
  b.n_ = bytes;
  return b;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (p_) cudaFree(p_);
    p_ = o.p_;
    n_ = o.n_;
    o.p_ = nullptr;
    o.n_ = 0;
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() {
  if (p_) cudaFree(p_);
}

Status DeviceBuffer::upload(const void* src, size_t bytes) {
  if (bytes > n_) return Error("cuda: upload of {} bytes into a {}-byte buffer", bytes, n_);
  KTX_CUDA_RETURN_IF_ERROR(cudaMemcpy(p_, src, bytes, cudaMemcpyHostToDevice));
  return Status::ok();
}

Status DeviceBuffer::download(void* dst, size_t bytes) const {
  if (bytes > n_) return Error("cuda: download of {} bytes from a {}-byte buffer", bytes, n_);
  KTX_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, p_, bytes, cudaMemcpyDeviceToHost));
  return Status::ok();
}

}  // namespace ktx::cuda
