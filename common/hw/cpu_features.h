// CPU feature probing: the one place in KTX that executes CPUID/XGETBV and asks the OS for AMX
// tile state. Everything else (kernel dispatch, the hardware profile, plan checks) takes the
// resulting CpuIsa, so a profile written on one host can stand in for another.
#pragma once

#include <string>

#include "common/hw/hw_profile.h"

namespace ktx {

// Features this CPU has *and* the OS lets us use: CPUID bits gated by the XCR0 state
// components (AVX: YMM; AVX-512: opmask + ZMM; AMX: tile config + tile data) and, on Linux,
// by a successful arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) for AMX.
CpuIsa detect_cpu_isa();

// CPUID brand string ("Intel(R) Xeon(R) Platinum 8480+"), trimmed; "" if not available.
std::string cpu_brand_string();

// Ask Linux for permission to use AMX tile data in this process (idempotent). True when the
// permission is granted (or not needed on this OS); false when the kernel refuses.
bool request_amx_permission();

}  // namespace ktx
