// NVRTC compilation of the GPU kernel families (runtime/cuda/kernels/) into one cubin for a
// CUDA arch. ktc and the tests link this; ktx-run never does (it loads what ktc compiled).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/util/status.h"

namespace ktx::cuda {

// "sm_90a", "sm_89", "sm_80" ... Errors: NVRTC's log (first lines), naming the arch.
Expected<std::vector<uint8_t>> compile_kernels(const std::string& arch);
// The NVRTC version ("13.0").
std::string nvrtc_version();

}  // namespace ktx::cuda
