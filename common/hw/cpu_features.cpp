// CPUID/XGETBV-based ISA detection. A feature is reported only when three things hold: the CPU
// advertises it (CPUID), the OS saves its register state on context switch (XCR0), and, for
// AMX on Linux, the process has been granted the tile-data state component. Reporting a
// feature the OS does not enable would make JIT kernels die with SIGILL at first use.
#include "common/hw/cpu_features.h"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define KTX_X86 1
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace ktx {
namespace {

#if KTX_X86
struct CpuidRegs {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

CpuidRegs cpuid(uint32_t leaf, uint32_t subleaf) {
  CpuidRegs r;
  __cpuid_count(leaf, subleaf, r.eax, r.ebx, r.ecx, r.edx);
  return r;
}

uint32_t max_leaf(uint32_t base) { return cpuid(base, 0).eax; }

// XGETBV(0) = XCR0: which register state components the OS has enabled. Only valid when
// CPUID.1:ECX.OSXSAVE is set (checked by the caller).
uint64_t read_xcr0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

bool bit(uint32_t v, int b) { return (v >> b) & 1u; }

// XCR0 state components (Intel SDM vol. 1, 13.1).
constexpr uint64_t kXcr0Sse = 1ull << 1;
constexpr uint64_t kXcr0Avx = 1ull << 2;
constexpr uint64_t kXcr0Opmask = 1ull << 5;
constexpr uint64_t kXcr0ZmmHi256 = 1ull << 6;
constexpr uint64_t kXcr0Hi16Zmm = 1ull << 7;
constexpr uint64_t kXcr0TileCfg = 1ull << 17;
constexpr uint64_t kXcr0TileData = 1ull << 18;
#endif

}  // namespace

bool request_amx_permission() {
#if defined(__linux__) && KTX_X86
  // Linux >= 5.16 keeps AMX tile data off until a process asks for it; without the request
  // the first tile instruction raises SIGILL even though XCR0 shows the component.
  constexpr int kArchGetXcompPerm = 0x1022;
  constexpr int kArchReqXcompPerm = 0x1023;
  constexpr unsigned long kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
  unsigned long perm = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &perm) != 0) return false;
  return (perm >> kXfeatureXtiledata) & 1ul;
#else
  return true;
#endif
}

CpuIsa detect_cpu_isa() {
  CpuIsa isa;
#if KTX_X86
  if (max_leaf(0) < 1) return isa;
  const CpuidRegs l1 = cpuid(1, 0);
  const bool osxsave = bit(l1.ecx, 27);
  const uint64_t xcr0 = osxsave ? read_xcr0() : 0;
  const bool os_avx = (xcr0 & (kXcr0Sse | kXcr0Avx)) == (kXcr0Sse | kXcr0Avx);
  const uint64_t zmm_mask = kXcr0Opmask | kXcr0ZmmHi256 | kXcr0Hi16Zmm;
  const bool os_avx512 = os_avx && (xcr0 & zmm_mask) == zmm_mask;
  const bool os_amx = (xcr0 & (kXcr0TileCfg | kXcr0TileData)) == (kXcr0TileCfg | kXcr0TileData);

  const bool avx = bit(l1.ecx, 28) && os_avx;
  isa.fma = avx && bit(l1.ecx, 12);
  isa.f16c = avx && bit(l1.ecx, 29);
  if (max_leaf(0) < 7) return isa;
  const CpuidRegs l7 = cpuid(7, 0);
  isa.avx2 = avx && bit(l7.ebx, 5);
  isa.avx512f = os_avx512 && bit(l7.ebx, 16);
  isa.avx512bw = isa.avx512f && bit(l7.ebx, 30);
  isa.avx512vl = isa.avx512f && bit(l7.ebx, 31);
  isa.avx512_vnni = isa.avx512f && bit(l7.ecx, 11);
  const bool amx_tile = os_amx && bit(l7.edx, 24);
  if (l7.eax >= 1) {  // leaf 7 subleaf 1 exists
    const CpuidRegs l71 = cpuid(7, 1);
    isa.avx_vnni = avx && bit(l71.eax, 4);
    isa.avx512_bf16 = isa.avx512f && bit(l71.eax, 5);
  }
  if (amx_tile && request_amx_permission()) {
    isa.amx_tile = true;
    isa.amx_int8 = bit(l7.edx, 25);
    isa.amx_bf16 = bit(l7.edx, 22);
  }
#endif
  return isa;
}

std::string cpu_brand_string() {
#if KTX_X86
  if (max_leaf(0x80000000u) < 0x80000004u) return "";
  char brand[49] = {};
  for (uint32_t i = 0; i < 3; ++i) {
    const CpuidRegs r = cpuid(0x80000002u + i, 0);
    std::memcpy(brand + 16 * i + 0, &r.eax, 4);
    std::memcpy(brand + 16 * i + 4, &r.ebx, 4);
    std::memcpy(brand + 16 * i + 8, &r.ecx, 4);
    std::memcpy(brand + 16 * i + 12, &r.edx, 4);
  }
  std::string s(brand);
  const size_t b = s.find_first_not_of(' ');
  const size_t e = s.find_last_not_of(' ');
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
#else
  return "";
#endif
}

}  // namespace ktx
