// The one check for CUDA runtime calls: KTX_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, n)) returns
// an error Status naming the file, the line, the call as written and CUDA's own message:
//   "runtime/cuda/library.cpp:41: cudaLibraryLoadData(&lib_, cubin.data(), ...) failed:
//    device kernel image is invalid (cudaErrorInvalidKernelImage)"
// KTX_CUDA_DEBUG=1 in the environment makes launches synchronous and checked one by one
// (cuda_debug()).
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "common/util/status.h"

namespace ktx::cuda {

Status cuda_error(cudaError_t err, const char* file, int line, const char* call);
// Whether KTX_CUDA_DEBUG=1 (read once).
bool cuda_debug();

}  // namespace ktx::cuda

#define KTX_CUDA_RETURN_IF_ERROR(call)                                              \
  do {                                                                              \
    const cudaError_t ktx_cuda_err_ = (call);                                       \
    if (ktx_cuda_err_ != cudaSuccess)                                               \
      return ::ktx::cuda::cuda_error(ktx_cuda_err_, __FILE__, __LINE__, #call);     \
  } while (0)
