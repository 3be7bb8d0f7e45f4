// CpuIsa's name table: the single mapping between feature flags and the names used in
// host.toml ([cpu.isa] keys), in plans (hw.cpu_isa) and in messages. The order is fixed so that
// written files and messages are stable.
#include <array>
#include <utility>

#include "common/hw/hw_profile.h"

namespace ktx {
namespace {

using FlagPtr = bool CpuIsa::*;
constexpr std::array<std::pair<const char*, FlagPtr>, 12> kIsaFlags = {{
    {"avx2", &CpuIsa::avx2},
    {"fma", &CpuIsa::fma},
    {"f16c", &CpuIsa::f16c},
    {"avx512f", &CpuIsa::avx512f},
    {"avx512bw", &CpuIsa::avx512bw},
    {"avx512vl", &CpuIsa::avx512vl},
    {"avx512_vnni", &CpuIsa::avx512_vnni},
    {"avx512_bf16", &CpuIsa::avx512_bf16},
    {"avx_vnni", &CpuIsa::avx_vnni},
    {"amx_tile", &CpuIsa::amx_tile},
    {"amx_int8", &CpuIsa::amx_int8},
    {"amx_bf16", &CpuIsa::amx_bf16},
}};

}  // namespace

const std::vector<std::string>& CpuIsa::all_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& [name, ptr] : kIsaFlags) v.emplace_back(name);
    return v;
  }();
  return names;
}

std::vector<std::string> CpuIsa::names() const {
  std::vector<std::string> v;
  for (const auto& [name, ptr] : kIsaFlags) {
    if (this->*ptr) v.emplace_back(name);
  }
  return v;
}

bool* CpuIsa::flag(std::string_view name) {
  for (const auto& [n, ptr] : kIsaFlags) {
    if (name == n) return &(this->*ptr);
  }
  return nullptr;
}

const bool* CpuIsa::flag(std::string_view name) const {
  return const_cast<CpuIsa*>(this)->flag(name);
}

}  // namespace ktx
