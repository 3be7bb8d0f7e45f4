// Emulated runtime/cuda/library.cpp and common/cuda/nvrtc.cpp: device buffers are host memory
// (filled with 0xFF = NaN until written), launches run the emulated kernels synchronously.
#include "runtime/cuda/library.h"
#include "runtime/cuda/cuda_check.h"
#include "common/cuda/nvrtc.h"
#include "common/quant/quant.h"
#include "registry.h"
struct EmuDim { unsigned x = 1, y = 1, z = 1; };
extern EmuDim threadIdx, blockIdx, blockDim, gridDim;
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

extern const EmuEntry kEmuEntries[];
extern const int kEmuEntryCount;
void emu_run_block(unsigned nt, const std::function<void()>& fn);
float emu_h2f(unsigned short h) { return ktx::fp16_to_fp32(h); }
unsigned short emu_f2h(float f) { return ktx::fp32_to_fp16(f); }
long long g_emu_launches = 0;

namespace ktx::cuda {
Status cuda_error(cudaError_t err, const char* file, int line, const char* call) {
  return Error("{}:{}: {} failed: emu error {}", file, line, call, static_cast<int>(err));
}
bool cuda_debug() { return false; }
int device_count() { return 1; }
Expected<std::string> device_arch(int) { return std::string("sm_90a"); }
Expected<Library> Library::load(const std::vector<uint8_t>& cubin) {
  if (cubin.empty()) return Error("cuda: empty GPU code image");
  Library l;
  l.lib_ = reinterpret_cast<cudaLibrary_t>(0x1);
  return l;
}
Library& Library::operator=(Library&& o) noexcept { lib_ = o.lib_; o.lib_ = nullptr; return *this; }
Library::~Library() {}
Expected<cudaKernel_t> Library::kernel(const std::string& name) const {
  for (int i = 0; i < kEmuEntryCount; ++i)
    if (name == kEmuEntries[i].name) return reinterpret_cast<cudaKernel_t>(const_cast<EmuEntry*>(&kEmuEntries[i]));
  return Error("cuda: the GPU code image has no kernel '{}' (emu)", name);
}
Status launch(cudaKernel_t k, dim3 grid, dim3 block, void** args, size_t, cudaStream_t) {
  auto* e = reinterpret_cast<const EmuEntry*>(k);
  if (!e) return Error("emu: null kernel");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || block.x == 0 || block.y != 1 || block.z != 1)
    return Error("emu: bad launch {} {} {} / {}", grid.x, grid.y, grid.z, block.x);
  ++g_emu_launches;
  gridDim.x = grid.x; gridDim.y = grid.y; gridDim.z = grid.z;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx.x = x; blockIdx.y = y; blockIdx.z = z;
        emu_run_block(block.x, [&] { e->invoke(args); });
      }
  return Status::ok();
}
Expected<DeviceBuffer> DeviceBuffer::alloc(size_t bytes) {
  DeviceBuffer b;
  b.p_ = std::malloc(bytes);
  std::memset(b.p_, 0xFF, bytes);  // NaN everywhere until written
  b.n_ = bytes;
  return b;
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) { std::free(p_); p_ = o.p_; n_ = o.n_; o.p_ = nullptr; o.n_ = 0; }
  return *this;
}
DeviceBuffer::~DeviceBuffer() { std::free(p_); }
Status DeviceBuffer::upload(const void* src, size_t bytes) {
  if (bytes > n_) return Error("cuda: upload of {} bytes into a {}-byte buffer", bytes, n_);
  std::memcpy(p_, src, bytes);
  return Status::ok();
}
Status DeviceBuffer::download(void* dst, size_t bytes) const {
  if (bytes > n_) return Error("cuda: download of {} bytes from a {}-byte buffer", bytes, n_);
  std::memcpy(dst, p_, bytes);
  return Status::ok();
}
Expected<std::vector<uint8_t>> compile_kernels(const std::string& arch) {
  if (arch.rfind("sm_", 0) != 0 || arch.size() < 5) return Error("nvrtc (emu): bad arch {}", arch);
  return std::vector<uint8_t>(4096, 1);
}
std::string nvrtc_version() { return "emu"; }
}  // namespace ktx::cuda
