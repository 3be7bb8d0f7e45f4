// plan_to_text: the stable text form of a plan that `ktc inspect` prints and lit tests
// FileCheck. Fixed line order, fixed key order, one op per line; values are bare when they
// are simple tokens and JSON-quoted otherwise, so the dump parses unambiguously. The format
// is specified in docs/plan-format.md ("Text dump"); change both together.
#include <nlohmann/json.hpp>

#include "common/plan/plan.h"

namespace ktx {
namespace {

bool is_bare(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-' || c == '+' || c == ':' || c == '/';
    if (!ok) return false;
  }
  return true;
}

// A value as the dump writes it: bare token or JSON string literal.
std::string val(const std::string& s) { return is_bare(s) ? s : nlohmann::json(s).dump(); }

std::string list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + val(items[i]);
  return out + "]";
}

// The model config as key=value pairs in the JSON object's (sorted) key order.
std::string model_line(const ModelConfig& m) {
  std::string out = "model";
  const nlohmann::json j = m.to_json();
  for (const auto& [k, v] : j.items()) {
    out += " " + k + "=" + (v.is_string() ? val(v.get<std::string>()) : v.dump());
  }
  return out;
}

}  // namespace

std::string plan_to_text(const Plan& plan) {
  std::string o;
  o += fmt::format("ktx-plan version={} producer={}\n", plan.version, val(plan.producer));
  o += fmt::format("gguf path={} size={} hash={} splits={}\n", val(plan.gguf.path),
                   plan.gguf.total_size, val(plan.gguf.hash), plan.gguf.n_splits);
  o += fmt::format("hw cpu_isa={} gpu_arch={} threads={}\n", list(plan.hw.cpu_isa),
                   plan.hw.gpu_arch.empty() ? "none" : val(plan.hw.gpu_arch), plan.hw.threads);
  if (!plan.hw.gpu_arch.empty()) {
    const GpuMemoryPlan& g = plan.hw.gpu;
    int n_gpu = 0;
    for (const PlanOp& op : plan.program) n_gpu += op.device == "gpu";
    auto gib = [](int64_t b) {
      if (b >= (int64_t{1} << 30)) return fmt::format("{:.2f}GiB", double(b) / double(1ull << 30));
      if (b >= (int64_t{1} << 20)) return fmt::format("{:.1f}MiB", double(b) / double(1ull << 20));
      return fmt::format("{:.1f}KiB", double(b) / 1024.0);
    };
    o += fmt::format("gpu name={} ops={} budget={} placed={} arena={} staging={} ctx={} free={} code={}\n",
                     val(g.name), n_gpu, gib(g.budget_bytes), gib(g.placed_bytes),
                     gib(g.arena_bytes), gib(g.staging_bytes), g.ctx,
                     gib(g.budget_bytes - g.placed_bytes - g.arena_bytes - g.stream_bytes),
                     plan.gpu_code.empty() ? std::string("none") : gib(static_cast<int64_t>(plan.gpu_code.size())));
    // Only plans that stream a layer show it (the line of other plans is unchanged).
    if (g.stream_bytes > 0) o.insert(o.size() - 1, " stream=" + gib(g.stream_bytes));
  }
  o += model_line(plan.model) + "\n";
  o += fmt::format("program ops={}\n", plan.program.size());
  if (!plan.buffers.empty()) {
    o += fmt::format("buffers n={}", plan.buffers.size());
    for (size_t i = 0; i < plan.buffers.size(); ++i)
      o += fmt::format(" {}:{}[{}]", i, plan.buffers[i].kind, plan.buffers[i].width);
    o += "\n";
  }
  for (const PlanOp& op : plan.program) {
    o += fmt::format("op {} kind={} layer={} device={} tensors={} attrs={{", val(op.name),
                     val(op.kind), op.layer, val(op.device), list(op.tensors));
    bool first = true;
    for (const auto& [k, v] : op.attrs) {  // std::map: sorted by key
      o += (first ? "" : ",") + val(k) + "=" + val(v);
      first = false;
    }
    o += "}";
    if (op.out >= 0) {
      o += " in=[";
      for (size_t i = 0; i < op.in.size(); ++i) o += (i ? "," : "") + std::to_string(op.in[i]);
      o += fmt::format("] out={}", op.out);
    }
    o += "\n";
  }
  return o;
}

}  // namespace ktx
