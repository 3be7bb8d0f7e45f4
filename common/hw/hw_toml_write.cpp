// host.toml writer: a commented file in a fixed key order, so that two probes of the same
// machine diff cleanly and a person editing the file sees what each key means and its unit.
// Every value is written (defaults included) so the file documents what the planner will use.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "common/hw/hw_profile.h"

namespace ktx {
namespace {

// TOML basic string with the escapes the spec requires.
std::string quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += fmt::format("\\u{:04X}", unsigned(c));
        } else {
          out += char(c);
        }
    }
  }
  return out + "\"";
}

// Shortest representation that reads back to the same double, always with a fraction or
// exponent so TOML types it as a float.
std::string float_str(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string human_bytes(uint64_t b) {
  if (b >= (1ull << 30)) return fmt::format("{:.1f} GiB", double(b) / double(1ull << 30));
  if (b >= (1ull << 20)) return fmt::format("{:.1f} MiB", double(b) / double(1ull << 20));
  if (b >= (1ull << 10)) return fmt::format("{:.1f} KiB", double(b) / double(1ull << 10));
  return "";
}

// "key = 1073741824  # 1.0 GiB, note"
std::string bytes_kv(const char* key, uint64_t b, const std::string& note) {
  std::string c = human_bytes(b);
  if (!note.empty()) c += (c.empty() ? "" : ", ") + note;
  return c.empty() ? fmt::format("{} = {}\n", key, b) : fmt::format("{} = {}  # {}\n", key, b, c);
}

void write_cpu(std::string& o, const CpuInfo& c) {
  o += "\n[cpu]\n";
  o += "model_name = " + quote(c.model_name) + "\n";
  o += fmt::format("sockets = {}\n", c.sockets);
  o += fmt::format("physical_cores = {}\n", c.physical_cores);
  o += fmt::format("logical_cpus = {}      # hardware threads\n", c.logical_cpus);
  o += fmt::format("numa_nodes = {}\n", c.numa_nodes);
  o += bytes_kv("l1d_bytes", c.l1d_bytes, "per core");
  o += bytes_kv("l2_bytes", c.l2_bytes, "per core");
  o += bytes_kv("l3_bytes", c.l3_bytes, "total over all sockets");
  o += "\n# Instruction sets usable by this process (CPU support + OS state enabled).\n";
  o += "[cpu.isa]\n";
  for (const auto& name : CpuIsa::all_names()) {
    o += fmt::format("{} = {}\n", name, *c.isa.flag(name) ? "true" : "false");
  }
  o += "\n# Measured peaks over all physical cores (0 = absent or not measured); 1e12 ops/s.\n";
  o += "[cpu.peaks]\n";
  o += "amx_int8_tops = " + float_str(c.peaks.amx_int8_tops) + "\n";
  o += "amx_bf16_tflops = " + float_str(c.peaks.amx_bf16_tflops) + "\n";
  o += "avx512_fma_tflops = " + float_str(c.peaks.avx512_fma_tflops) + "\n";
  o += "avx2_fma_tflops = " + float_str(c.peaks.avx2_fma_tflops) + "\n";
}

void write_gpu(std::string& o, const GpuInfo& g) {
  o += "\n[[gpu]]\n";
  o += "name = " + quote(g.name) + "\n";
  o += "arch = " + quote(g.arch) + "\n";
  o += bytes_kv("memory_bytes", g.memory_bytes, "");
  o += "mem_bw_gbs = " + float_str(g.mem_bw_gbs) + "  # device memory, GB/s (0 = unknown)\n";
  o += "pcie_bw_gbs = " + float_str(g.pcie_bw_gbs) +
       "  # host -> device copies from pinned memory, GB/s (0 = unknown)\n";
  if (g.gemm_tflops > 0)
    o += "gemm_tflops = " + float_str(g.gemm_tflops) + "  # float GEMM of KTX's GPU kernels, TFLOP/s\n";
  else
    o += "# gemm_tflops = ...  # float GEMM of KTX's GPU kernels, TFLOP/s (absent: estimated from arch)\n";
}

}  // namespace

std::string HwProfile::to_toml() const {
  std::string o;
  o += "# KTX hardware profile (schema: docs/hw-profile.md). Written by `ktx-run probe`;\n";
  o += "# read by `ktc plan --hw`. Sizes are bytes, bandwidths GB/s (1e9 bytes/s).\n";
  o += fmt::format("schema_version = {}\n", schema_version);
  o += "hostname = " + quote(hostname) + "\n";
  write_cpu(o, cpu);
  o += "\n[memory]\n";
  o += bytes_kv("total_bytes", memory.total_bytes, "");
  o += "read_bw_gbs = " + float_str(memory.read_bw_gbs) +
       "  # streaming read, all physical cores\n";
  if (gpus.empty()) o += "\n# No GPU: add [[gpu]] tables (name, arch, memory_bytes, ...) to plan for one.\n";
  for (const auto& g : gpus) write_gpu(o, g);
  o += "\n# What a plan may use.\n[budgets]\n";
  o += bytes_kv("vram_reserve_bytes", budgets.vram_reserve_bytes, "left free on each GPU");
  o += bytes_kv("host_reserve_bytes", budgets.host_reserve_bytes, "left free in host memory");
  o += fmt::format("threads = {}  # CPU threads for experts; 0 = physical cores\n",
                   budgets.threads);
  o += fmt::format("context = {}  # KV-cache length (tokens) the plan provisions\n",
                   budgets.context);
  if (!tuned.empty()) {
    o += "\n# Kernel configurations measured fastest on this host (`ktx-run tune`):\n";
    o += "# descriptor (common/kernels/kernel_desc.h) = configuration.\n[tuned]\n";
    for (const auto& [desc, cfg] : tuned) o += quote(desc) + " = " + quote(cfg) + "\n";
  }
  return o;
}

Status HwProfile::save(const std::string& path) const {
  const std::string text = to_toml();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Error("{}: cannot open for writing: {}", path, std::strerror(errno));
  out.write(text.data(), std::streamsize(text.size()));
  out.close();
  if (!out) return Error("{}: write failed: {}", path, std::strerror(errno));
  return Status::ok();
}

}  // namespace ktx
