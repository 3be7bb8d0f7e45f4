// Compatibility checks the runtime makes before it trusts a plan: is this the GGUF the plan
// was made for, and does this host have the ISA features (and GPU) the plan's kernels need?
// Each failure says what differs and how to make a plan that fits.
#include "common/gguf/gguf.h"
#include "common/plan/plan.h"

namespace ktx {
namespace {

std::string short_hash(const std::string& h) { return h.size() > 16 ? h.substr(0, 16) + "..." : h; }

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// "sm_90a" on the host runs plans for "sm_90a" and "sm_90"; otherwise the arch must match.
bool gpu_arch_fits(const std::string& plan_arch, const std::string& host_arch) {
  if (plan_arch == host_arch) return true;
  return !host_arch.empty() && host_arch.back() == 'a' &&
         host_arch.substr(0, host_arch.size() - 1) == plan_arch;
}

}  // namespace

Status check_plan_gguf(const Plan& plan, const GGUFFile& f) {
  const GGUFIdentity& want = plan.gguf;
  if (want.total_size == f.total_size() && want.hash == f.identity_hash() &&
      want.n_splits == f.n_splits()) {
    return Status::ok();
  }
  return Error("plan was made for {} (size {}, {} part(s), hash {}), but {} has size {}, "
               "{} part(s), hash {}; re-run: ktc plan --hw host.toml {} -o PLAN",
               want.path, want.total_size, want.n_splits, short_hash(want.hash), f.path(),
               f.total_size(), f.n_splits(), short_hash(f.identity_hash()), f.path());
}

Status check_plan_host(const Plan& plan, const CpuIsa& host_isa) {
  std::vector<std::string> missing;
  std::vector<std::string> unknown;
  for (const std::string& name : plan.hw.cpu_isa) {
    const bool* flag = host_isa.flag(name);
    if (!flag) {
      unknown.push_back(name);
    } else if (!*flag) {
      missing.push_back(name);
    }
  }
  if (!unknown.empty()) {
    return Error("plan needs CPU features this ktx-run does not know: {}; use a newer ktx-run",
                 join(unknown));
  }
  if (!missing.empty()) {
    const std::vector<std::string> have = host_isa.names();
    return Error("plan needs CPU features this host lacks: {} (host has: {}); re-run on this "
                 "host: ktx-run probe -o host.toml && ktc plan --hw host.toml MODEL.gguf -o PLAN",
                 join(missing), have.empty() ? "none of the known features" : join(have));
  }
  return Status::ok();
}

Status check_plan_host(const Plan& plan, const HwProfile& host) {
  KTX_RETURN_IF_ERROR(check_plan_host(plan, host.cpu.isa));
  if (plan.hw.gpu_arch.empty()) return Status::ok();
  std::vector<std::string> archs;
  for (const GpuInfo& g : host.gpus) {
    if (gpu_arch_fits(plan.hw.gpu_arch, g.arch)) return Status::ok();
    archs.push_back(g.arch);
  }
  return Error("plan needs a GPU of arch {}, this host has {}; re-run on this host: "
               "ktx-run probe -o host.toml && ktc plan --hw host.toml MODEL.gguf -o PLAN",
               plan.hw.gpu_arch, archs.empty() ? "no GPU" : "only " + join(archs));
}

}  // namespace ktx
