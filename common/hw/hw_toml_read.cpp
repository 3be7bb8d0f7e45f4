// host.toml reader (schema v1, docs/hw-profile.md). Strict on purpose: a misspelled key in a
// profile silently falling back to a default would produce a plan for the wrong machine, so
// unknown keys, wrong types and out-of-range values are errors that name the key, its position
// in the file, what was expected and what was found.
#include <toml++/toml.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>

#include "common/hw/hw_profile.h"

namespace ktx {
namespace {

const char* type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::table: return "table";
    case toml::node_type::array: return "array";
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    default: return "nothing";
  }
}

// Walks one parsed document; every error it returns starts with "source[:line:col]: key: ".
class ProfileReader {
 public:
  explicit ProfileReader(std::string source) : source_(std::move(source)) {}

  Status error_at(const toml::node* n, const std::string& key, const std::string& msg) const {
    if (n && n->source().begin.line > 0) {
      return Error("{}:{}:{}: {}: {}", source_, n->source().begin.line, n->source().begin.column,
                   key, msg);
    }
    return Error("{}: {}: {}", source_, key, msg);
  }

  // Rejects keys of `t` not in `known`; `where` is the table's dotted name ("" = top level).
  Status check_keys(const toml::table& t, const std::string& where,
                    std::initializer_list<std::string_view> known) const {
    for (const auto& [k, v] : t) {
      bool ok = false;
      for (auto kk : known) ok = ok || k.str() == kk;
      if (ok) continue;
      std::string list;
      for (auto kk : known) list += (list.empty() ? "" : ", ") + std::string(kk);
      return error_at(&v, join(where, k.str()),
                      fmt::format("unknown key (known keys{}: {})",
                                  where.empty() ? "" : " in [" + where + "]", list));
    }
    return Status::ok();
  }

  static std::string join(const std::string& where, std::string_view key) {
    return where.empty() ? std::string(key) : where + "." + std::string(key);
  }

  template <typename T>
  Status get_int(const toml::table& t, const std::string& where, const char* key, bool required,
                 int64_t min, T* out) const {
    const std::string name = join(where, key);
    const toml::node* n = t.get(key);
    if (!n) return required ? missing(name) : Status::ok();
    const auto* v = n->as_integer();
    if (!v) return error_at(n, name, "expected an integer, found " + describe(*n));
    const int64_t x = v->get();
    const int64_t max = std::numeric_limits<T>::max() < std::numeric_limits<int64_t>::max()
                            ? int64_t(std::numeric_limits<T>::max())
                            : std::numeric_limits<int64_t>::max();
    if (x < min || x > max) {
      return error_at(n, name, fmt::format("expected an integer in [{}, {}], found {}", min, max, x));
    }
    *out = static_cast<T>(x);
    return Status::ok();
  }

  // Floats accept integers too ("read_bw_gbs = 150" is what people write).
  Status get_float(const toml::table& t, const std::string& where, const char* key,
                   bool required, double min, bool min_exclusive, double* out) const {
    const std::string name = join(where, key);
    const toml::node* n = t.get(key);
    if (!n) return required ? missing(name) : Status::ok();
    double x = 0;
    if (const auto* f = n->as_floating_point()) {
      x = f->get();
    } else if (const auto* i = n->as_integer()) {
      x = double(i->get());
    } else {
      return error_at(n, name, "expected a number, found " + describe(*n));
    }
    if (!(min_exclusive ? x > min : x >= min) || x > 1e15) {
      return error_at(n, name, fmt::format("expected a number {} {}, found {}",
                                           min_exclusive ? ">" : ">=", min, x));
    }
    *out = x;
    return Status::ok();
  }

  Status get_string(const toml::table& t, const std::string& where, const char* key,
                    bool required, std::string* out) const {
    const std::string name = join(where, key);
    const toml::node* n = t.get(key);
    if (!n) return required ? missing(name) : Status::ok();
    const auto* s = n->as_string();
    if (!s) return error_at(n, name, "expected a string, found " + describe(*n));
    *out = s->get();
    return Status::ok();
  }

  Status get_bool(const toml::table& t, const std::string& where, std::string_view key,
                  bool* out) const {
    const std::string name = join(where, key);
    const toml::node* n = t.get(key);
    if (!n) return Status::ok();
    const auto* b = n->as_boolean();
    if (!b) return error_at(n, name, "expected true or false, found " + describe(*n));
    *out = b->get();
    return Status::ok();
  }

  // A sub-table; `*out` stays null when absent and not required.
  Status get_table(const toml::table& t, const char* key, bool required,
                   const toml::table** out) const {
    const toml::node* n = t.get(key);
    if (!n) return required ? missing(std::string("[") + key + "]") : Status::ok();
    if (!n->is_table()) {
      return error_at(n, key, "expected a table ([" + std::string(key) + "]), found " +
                                  describe(*n));
    }
    *out = n->as_table();
    return Status::ok();
  }

  Status missing(const std::string& name) const {
    return Error("{}: {}: required key is missing", source_, name);
  }

  static std::string describe(const toml::node& n) {
    if (const auto* s = n.as_string()) return fmt::format("string \"{}\"", s->get());
    if (const auto* b = n.as_boolean()) return fmt::format("boolean {}", b->get());
    return type_name(n.type());
  }

 private:
  std::string source_;
};

Status read_cpu(const ProfileReader& r, const toml::table& t, CpuInfo* cpu) {
  KTX_RETURN_IF_ERROR(r.check_keys(t, "cpu", {"model_name", "sockets", "physical_cores",
                                              "logical_cpus", "numa_nodes", "l1d_bytes",
                                              "l2_bytes", "l3_bytes", "isa", "peaks"}));
  KTX_RETURN_IF_ERROR(r.get_string(t, "cpu", "model_name", false, &cpu->model_name));
  KTX_RETURN_IF_ERROR(r.get_int(t, "cpu", "sockets", false, 1, &cpu->sockets));
  KTX_RETURN_IF_ERROR(r.get_int(t, "cpu", "physical_cores", true, 1, &cpu->physical_cores));
  cpu->logical_cpus = cpu->physical_cores;
  KTX_RETURN_IF_ERROR(
      r.get_int(t, "cpu", "logical_cpus", false, cpu->physical_cores, &cpu->logical_cpus));
  KTX_RETURN_IF_ERROR(r.get_int(t, "cpu", "numa_nodes", false, 1, &cpu->numa_nodes));
  KTX_RETURN_IF_ERROR(r.get_int(t, "cpu", "l1d_bytes", false, 0, &cpu->l1d_bytes));
  KTX_RETURN_IF_ERROR(r.get_int(t, "cpu", "l2_bytes", false, 0, &cpu->l2_bytes));
  KTX_RETURN_IF_ERROR(r.get_int(t, "cpu", "l3_bytes", false, 0, &cpu->l3_bytes));
  const toml::table* peaks = nullptr;
  KTX_RETURN_IF_ERROR(r.get_table(t, "peaks", false, &peaks));
  if (peaks) {
    KTX_RETURN_IF_ERROR(r.check_keys(*peaks, "cpu.peaks", {"amx_int8_tops", "amx_bf16_tflops",
                                                           "avx512_fma_tflops", "avx2_fma_tflops"}));
    KTX_RETURN_IF_ERROR(r.get_float(*peaks, "cpu.peaks", "amx_int8_tops", false, 0, false, &cpu->peaks.amx_int8_tops));
    KTX_RETURN_IF_ERROR(r.get_float(*peaks, "cpu.peaks", "amx_bf16_tflops", false, 0, false, &cpu->peaks.amx_bf16_tflops));
    KTX_RETURN_IF_ERROR(r.get_float(*peaks, "cpu.peaks", "avx512_fma_tflops", false, 0, false, &cpu->peaks.avx512_fma_tflops));
    KTX_RETURN_IF_ERROR(r.get_float(*peaks, "cpu.peaks", "avx2_fma_tflops", false, 0, false, &cpu->peaks.avx2_fma_tflops));
  }
  const toml::table* isa = nullptr;
  KTX_RETURN_IF_ERROR(r.get_table(t, "isa", false, &isa));
  if (!isa) return Status::ok();
  for (const auto& [k, v] : *isa) {
    bool* flag = cpu->isa.flag(k.str());
    if (!flag) {
      std::string known;
      for (const auto& n : CpuIsa::all_names()) known += (known.empty() ? "" : ", ") + n;
      return r.error_at(&v, "cpu.isa." + std::string(k.str()),
                        "unknown ISA feature (known: " + known + ")");
    }
    KTX_RETURN_IF_ERROR(r.get_bool(*isa, "cpu.isa", k.str(), flag));
  }
  return Status::ok();
}

Status read_gpu(const ProfileReader& r, const toml::table& t, size_t i, GpuInfo* gpu) {
  const std::string where = fmt::format("gpu[{}]", i);
  KTX_RETURN_IF_ERROR(
      r.check_keys(t, where, {"name", "arch", "memory_bytes", "mem_bw_gbs", "pcie_bw_gbs",
                              "gemm_tflops"}));
  KTX_RETURN_IF_ERROR(r.get_string(t, where, "name", false, &gpu->name));
  KTX_RETURN_IF_ERROR(r.get_string(t, where, "arch", true, &gpu->arch));
  static const std::regex kArch("sm_[0-9]{2,3}[af]?");
  if (!std::regex_match(gpu->arch, kArch)) {
    return r.error_at(t.get("arch"), where + ".arch",
                      fmt::format("expected a CUDA arch like \"sm_90a\" or \"sm_89\", found \"{}\"",
                                  gpu->arch));
  }
  KTX_RETURN_IF_ERROR(r.get_int(t, where, "memory_bytes", true, 1, &gpu->memory_bytes));
  KTX_RETURN_IF_ERROR(r.get_float(t, where, "mem_bw_gbs", false, 0, false, &gpu->mem_bw_gbs));
  KTX_RETURN_IF_ERROR(r.get_float(t, where, "pcie_bw_gbs", false, 0, false, &gpu->pcie_bw_gbs));
  // Optional, but a measurement when present: 0 would mean "not measured", which is absence.
  return r.get_float(t, where, "gemm_tflops", false, 0, true, &gpu->gemm_tflops);
}

Status read_gpus(const ProfileReader& r, const toml::table& root, std::vector<GpuInfo>* gpus) {
  const toml::node* n = root.get("gpu");
  if (!n) return Status::ok();
  const auto* arr = n->as_array();
  if (!arr) return r.error_at(n, "gpu", "expected an array of tables ([[gpu]]), found " +
                                            ProfileReader::describe(*n));
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::node& e = *arr->get(i);
    if (!e.is_table()) {
      return r.error_at(&e, fmt::format("gpu[{}]", i),
                        "expected a table, found " + ProfileReader::describe(e));
    }
    GpuInfo g;
    KTX_RETURN_IF_ERROR(read_gpu(r, *e.as_table(), i, &g));
    gpus->push_back(std::move(g));
  }
  return Status::ok();
}

Status read_budgets(const ProfileReader& r, const toml::table& t, Budgets* b) {
  KTX_RETURN_IF_ERROR(r.check_keys(
      t, "budgets", {"vram_reserve_bytes", "host_reserve_bytes", "threads", "context"}));
  KTX_RETURN_IF_ERROR(
      r.get_int(t, "budgets", "vram_reserve_bytes", false, 0, &b->vram_reserve_bytes));
  KTX_RETURN_IF_ERROR(
      r.get_int(t, "budgets", "host_reserve_bytes", false, 0, &b->host_reserve_bytes));
  KTX_RETURN_IF_ERROR(r.get_int(t, "budgets", "threads", false, 0, &b->threads));
  return r.get_int(t, "budgets", "context", false, 1, &b->context);
}

// [tuned]: "moe:..." descriptor -> "cfg:..." config. Only the prefixes are checked here:
// ktx_hw does not link the kernel library that parses them (runtime/cpu); the runtime parses
// an entry when it uses it, and `ktx-run tune` only writes strings it produced.
Status read_tuned(const ProfileReader& r, const toml::table& t,
                  std::map<std::string, std::string>* tuned) {
  for (const auto& [k, v] : t) {
    const std::string key(k.str());
    const std::string name = "tuned.\"" + key + "\"";
    if (key.rfind("moe:", 0) != 0) {
      return r.error_at(&v, name, "expected a kernel descriptor key starting with \"moe:\"");
    }
    const auto* s = v.as_string();
    if (!s) {
      return r.error_at(&v, name, "expected a string \"cfg:...\", found " +
                                      ProfileReader::describe(v));
    }
    if (s->get().rfind("cfg:", 0) != 0) {
      return r.error_at(&v, name, fmt::format("expected a kernel configuration starting with "
                                              "\"cfg:\", found \"{}\"", s->get()));
    }
    (*tuned)[key] = s->get();
  }
  return Status::ok();
}

Expected<HwProfile> read_profile(const ProfileReader& r, const toml::table& root) {
  HwProfile p;
  // schema_version first: a file of another schema may legitimately have other keys.
  const toml::node* sv = root.get("schema_version");
  if (!sv) return r.missing("schema_version");
  if (!sv->is_integer() || sv->as_integer()->get() != 1) {
    return r.error_at(sv, "schema_version",
                      "this ktx reads schema_version = 1, found " +
                          (sv->is_integer() ? std::to_string(sv->as_integer()->get())
                                            : ProfileReader::describe(*sv)));
  }
  KTX_RETURN_IF_ERROR(
      r.check_keys(root, "", {"schema_version", "hostname", "cpu", "memory", "gpu", "budgets",
                              "tuned"}));
  KTX_RETURN_IF_ERROR(r.get_string(root, "", "hostname", false, &p.hostname));
  const toml::table* cpu = nullptr;
  const toml::table* mem = nullptr;
  const toml::table* budgets = nullptr;
  KTX_RETURN_IF_ERROR(r.get_table(root, "cpu", true, &cpu));
  KTX_RETURN_IF_ERROR(read_cpu(r, *cpu, &p.cpu));
  KTX_RETURN_IF_ERROR(r.get_table(root, "memory", true, &mem));
  KTX_RETURN_IF_ERROR(r.check_keys(*mem, "memory", {"total_bytes", "read_bw_gbs"}));
  KTX_RETURN_IF_ERROR(r.get_int(*mem, "memory", "total_bytes", true, 1, &p.memory.total_bytes));
  KTX_RETURN_IF_ERROR(
      r.get_float(*mem, "memory", "read_bw_gbs", true, 0, true, &p.memory.read_bw_gbs));
  KTX_RETURN_IF_ERROR(read_gpus(r, root, &p.gpus));
  KTX_RETURN_IF_ERROR(r.get_table(root, "budgets", false, &budgets));
  if (budgets) KTX_RETURN_IF_ERROR(read_budgets(r, *budgets, &p.budgets));
  const toml::table* tuned = nullptr;
  KTX_RETURN_IF_ERROR(r.get_table(root, "tuned", false, &tuned));
  if (tuned) KTX_RETURN_IF_ERROR(read_tuned(r, *tuned, &p.tuned));
  return p;
}

}  // namespace

Expected<HwProfile> HwProfile::from_toml_string(const std::string& text,
                                                const std::string& source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return Error("{}:{}:{}: {}", source, e.source().begin.line, e.source().begin.column,
                 e.description());
  }
  return read_profile(ProfileReader(source), root);
}

Expected<HwProfile> HwProfile::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error("{}: cannot open hardware profile: {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Error("{}: read error", path);
  return from_toml_string(ss.str(), path);
}

}  // namespace ktx
