// common/cuda/nvrtc.h. The kernel sources are embedded at build time (cuda_sources.h, made by
// CMake from runtime/cuda/kernels); every family is one header of one program, so one cubin
// holds them all.
#include "common/cuda/nvrtc.h"

#include <nvrtc.h>

#include <fmt/format.h>

#include "common/cuda/cuda_sources.h"  // generated (build dir)

namespace ktx::cuda {
namespace {

#define KTX_NVRTC_RETURN_IF_ERROR(call)                                                     \
  do {                                                                                      \
    const nvrtcResult ktx_r_ = (call);                                                      \
    if (ktx_r_ != NVRTC_SUCCESS)                                                            \
      return Error("{}:{}: {} failed: {}", "common/cuda/nvrtc.cpp", __LINE__, #call,        \
                   nvrtcGetErrorString(ktx_r_));                                            \
  } while (0)

struct Program {
  nvrtcProgram p = nullptr;
  ~Program() {
    if (p) nvrtcDestroyProgram(&p);
  }
};

}  // namespace

std::string nvrtc_version() {
  int major = 0, minor = 0;
  if (nvrtcVersion(&major, &minor) != NVRTC_SUCCESS) return "unknown";
  return fmt::format("{}.{}", major, minor);
}

Expected<std::vector<uint8_t>> compile_kernels(const std::string& arch) {
  std::string main_src;
  std::vector<const char*> headers, names;
  for (const KernelSource& s : kKernelSources) {
    headers.push_back(s.text);
    names.push_back(s.path);
    if (std::string(s.path).find("common/") != 0) main_src += fmt::format("#include \"{}\"\n", s.path);
  }
  Program prog;
  KTX_NVRTC_RETURN_IF_ERROR(nvrtcCreateProgram(&prog.p, main_src.c_str(), "ktx_kernels.cu",
                                               static_cast<int>(headers.size()), headers.data(),
                                               names.data()));
  const std::string arch_opt = "--gpu-architecture=" + arch;
  const char* opts[] = {arch_opt.c_str(), "--std=c++17", "-default-device", "-lineinfo"};
  const nvrtcResult r = nvrtcCompileProgram(prog.p, 4, opts);
  if (r != NVRTC_SUCCESS) {
    size_t n = 0;
    nvrtcGetProgramLogSize(prog.p, &n);
    std::string log(n, '\0');
    if (n) nvrtcGetProgramLog(prog.p, log.data());
    if (log.size() > 2000) log = log.substr(0, 2000) + "...";
    return Error("nvrtc: compiling the GPU kernels for {} failed ({}):\n{}", arch,
                 nvrtcGetErrorString(r), log);
  }
  size_t size = 0;
  KTX_NVRTC_RETURN_IF_ERROR(nvrtcGetCUBINSize(prog.p, &size));
  std::vector<uint8_t> cubin(size);
  KTX_NVRTC_RETURN_IF_ERROR(nvrtcGetCUBIN(prog.p, reinterpret_cast<char*>(cubin.data())));
  return cubin;
}

}  // namespace ktx::cuda
