// JSON payloads of the gguf, hw and program sections (the model section is ModelConfig's own
// JSON). Decoding is strict: every field must be present with the right type, and unknown
// fields are refused, because a plan field this reader ignores could change what runs.
#include "common/plan/plan_internal.h"

namespace ktx::plan_detail {
namespace {

using nlohmann::json;

std::string kind_of(const json& v) {
  if (v.is_string()) return "string \"" + v.get<std::string>() + "\"";
  if (v.is_number_integer()) return "integer";
  if (v.is_number()) return "number";
  return v.type_name();  // "object", "array", "boolean", "null"
}

// Checked access to one JSON object; `where` prefixes field names ("ops[3]").
class Fields {
 public:
  Fields(const json& j, std::string where) : j_(j), where_(std::move(where)) {}

  // `known` must all be present; `optional` may be.
  Status check_object(std::initializer_list<const char*> known,
                      std::initializer_list<const char*> optional = {}) const {
    if (!j_.is_object()) return Error("{}: expected an object, found {}", label(), kind_of(j_));
    for (const auto& [k, v] : j_.items()) {
      bool ok = false;
      for (const char* kk : known) ok = ok || k == kk;
      for (const char* kk : optional) ok = ok || k == kk;
      if (!ok) return Error("{}: unknown field", name(k));
    }
    for (const char* kk : known) {
      if (!j_.contains(kk)) return Error("{}: missing field", name(kk));
    }
    return Status::ok();
  }

  Status str(const char* k, std::string* out, bool nonempty = false) const {
    const json& v = j_.at(k);
    if (!v.is_string()) return Error("{}: expected a string, found {}", name(k), kind_of(v));
    *out = v.get<std::string>();
    if (nonempty && out->empty()) return Error("{}: expected a non-empty string", name(k));
    return Status::ok();
  }

  Status integer(const char* k, int64_t min, int64_t max, int64_t* out) const {
    const json& v = j_.at(k);
    if (!v.is_number_integer()) {
      return Error("{}: expected an integer, found {}", name(k), kind_of(v));
    }
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)) {
      return Error("{}: expected an integer in [{}, {}], found {}", name(k), min, max,
                   v.get<uint64_t>());
    }
    *out = v.get<int64_t>();
    if (*out < min || *out > max) {
      return Error("{}: expected an integer in [{}, {}], found {}", name(k), min, max, *out);
    }
    return Status::ok();
  }

  Status u64(const char* k, uint64_t* out) const {
    const json& v = j_.at(k);
    if (!v.is_number_unsigned()) {
      return Error("{}: expected a non-negative integer, found {}", name(k), kind_of(v));
    }
    *out = v.get<uint64_t>();
    return Status::ok();
  }

  Status str_array(const char* k, std::vector<std::string>* out) const {
    const json& v = j_.at(k);
    if (!v.is_array()) return Error("{}: expected an array, found {}", name(k), kind_of(v));
    out->clear();
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_string()) {
        return Error("{}[{}]: expected a string, found {}", name(k), i, kind_of(v[i]));
      }
      out->push_back(v[i].get<std::string>());
    }
    return Status::ok();
  }

  // An array of integers in [min, max].
  Status int_array(const char* k, int64_t min, int64_t max, std::vector<int>* out) const {
    const json& v = j_.at(k);
    if (!v.is_array()) return Error("{}: expected an array, found {}", name(k), kind_of(v));
    out->clear();
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_number_integer() || v[i].get<int64_t>() < min || v[i].get<int64_t>() > max)
        return Error("{}[{}]: expected an integer in [{}, {}]", name(k), i, min, max);
      out->push_back(static_cast<int>(v[i].get<int64_t>()));
    }
    return Status::ok();
  }

  Status str_map(const char* k, std::map<std::string, std::string>* out) const {
    const json& v = j_.at(k);
    if (!v.is_object()) return Error("{}: expected an object, found {}", name(k), kind_of(v));
    out->clear();
    for (const auto& [kk, vv] : v.items()) {
      if (!vv.is_string()) {
        return Error("{}.{}: expected a string, found {}", name(k), kk, kind_of(vv));
      }
      (*out)[kk] = vv.get<std::string>();
    }
    return Status::ok();
  }

 private:
  std::string label() const { return where_.empty() ? "payload" : where_; }
  std::string name(const std::string& k) const { return where_.empty() ? k : where_ + "." + k; }
  const json& j_;
  std::string where_;
};

Status decode_op(const json& j, size_t i, PlanOp* op) {
  Fields f(j, fmt::format("ops[{}]", i));
  KTX_RETURN_IF_ERROR(
      f.check_object({"name", "kind", "layer", "device", "tensors", "attrs"}, {"in", "out"}));
  if (j.contains("in") != j.contains("out"))
    return Error("ops[{}]: 'in' and 'out' must be given together", i);
  if (j.contains("out")) {
    int64_t out = 0;
    KTX_RETURN_IF_ERROR(f.integer("out", -1, INT32_MAX, &out));
    op->out = static_cast<int>(out);
    KTX_RETURN_IF_ERROR(f.int_array("in", 0, INT32_MAX, &op->in));
  }
  KTX_RETURN_IF_ERROR(f.str("name", &op->name, true));
  KTX_RETURN_IF_ERROR(f.str("kind", &op->kind, true));
  int64_t layer = 0;
  KTX_RETURN_IF_ERROR(f.integer("layer", -1, INT32_MAX, &layer));
  op->layer = int(layer);
  KTX_RETURN_IF_ERROR(f.str("device", &op->device));
  if (op->device != "cpu" && op->device != "gpu") {
    return Error("ops[{}].device: expected \"cpu\" or \"gpu\", found \"{}\"", i, op->device);
  }
  KTX_RETURN_IF_ERROR(f.str_array("tensors", &op->tensors));
  return f.str_map("attrs", &op->attrs);
}

}  // namespace

json encode_gguf(const GGUFIdentity& g) {
  return json{{"path", g.path}, {"total_size", g.total_size}, {"hash", g.hash},
              {"n_splits", g.n_splits}};
}

json encode_hw(const HwAssumption& hw) {
  json j{{"cpu_isa", hw.cpu_isa}, {"gpu_arch", hw.gpu_arch}, {"threads", hw.threads}};
  if (!hw.gpu_arch.empty()) {
    const GpuMemoryPlan& g = hw.gpu;
    j["gpu"] = json{{"name", g.name},           {"budget_bytes", g.budget_bytes},
                    {"placed_bytes", g.placed_bytes}, {"arena_bytes", g.arena_bytes},
                    {"staging_bytes", g.staging_bytes}, {"ctx", g.ctx}};
    // Written only when a layer streams, so plans without streaming stay readable by the
    // ktx-run versions before it.
    if (g.stream_bytes > 0) j["gpu"]["stream_bytes"] = g.stream_bytes;
  }
  return j;
}

json encode_program(const Plan& plan) {
  json ops = json::array();
  for (const PlanOp& op : plan.program) {
    json o{{"name", op.name}, {"kind", op.kind}, {"layer", op.layer},
           {"device", op.device}, {"tensors", op.tensors}, {"attrs", op.attrs}};
    if (op.out >= 0) {
      o["in"] = op.in;
      o["out"] = op.out;
    }
    ops.push_back(std::move(o));
  }
  json prog{{"producer", plan.producer}, {"ops", std::move(ops)}};
  if (!plan.buffers.empty()) {
    json bufs = json::array();
    for (const PlanBuffer& b : plan.buffers) bufs.push_back(json{{"kind", b.kind}, {"width", b.width}});
    prog["buffers"] = std::move(bufs);
  }
  return prog;
}

Status decode_gguf(const json& j, GGUFIdentity* out) {
  Fields f(j, "");
  KTX_RETURN_IF_ERROR(f.check_object({"path", "total_size", "hash", "n_splits"}));
  KTX_RETURN_IF_ERROR(f.str("path", &out->path));
  KTX_RETURN_IF_ERROR(f.u64("total_size", &out->total_size));
  KTX_RETURN_IF_ERROR(f.str("hash", &out->hash, true));
  int64_t n = 0;
  KTX_RETURN_IF_ERROR(f.integer("n_splits", 1, 99999, &n));
  out->n_splits = uint32_t(n);
  return Status::ok();
}

Status decode_hw(const json& j, HwAssumption* out) {
  Fields f(j, "");
  KTX_RETURN_IF_ERROR(f.check_object({"cpu_isa", "gpu_arch", "threads"}, {"gpu"}));
  KTX_RETURN_IF_ERROR(f.str_array("cpu_isa", &out->cpu_isa));
  KTX_RETURN_IF_ERROR(f.str("gpu_arch", &out->gpu_arch));
  int64_t threads = 0;
  KTX_RETURN_IF_ERROR(f.integer("threads", 0, 1 << 20, &threads));
  out->threads = int(threads);
  out->gpu = GpuMemoryPlan{};
  if (j.contains("gpu")) {
    Fields g(j.at("gpu"), "gpu");
    KTX_RETURN_IF_ERROR(g.check_object({"name", "budget_bytes", "placed_bytes", "arena_bytes",
                                        "staging_bytes", "ctx"}, {"stream_bytes"}));
    KTX_RETURN_IF_ERROR(g.str("name", &out->gpu.name));
    constexpr int64_t kMax = int64_t{1} << 50;
    KTX_RETURN_IF_ERROR(g.integer("budget_bytes", 0, kMax, &out->gpu.budget_bytes));
    KTX_RETURN_IF_ERROR(g.integer("placed_bytes", 0, kMax, &out->gpu.placed_bytes));
    KTX_RETURN_IF_ERROR(g.integer("arena_bytes", 0, kMax, &out->gpu.arena_bytes));
    KTX_RETURN_IF_ERROR(g.integer("staging_bytes", 0, kMax, &out->gpu.staging_bytes));
    KTX_RETURN_IF_ERROR(g.integer("ctx", 0, kMax, &out->gpu.ctx));
    if (j.at("gpu").contains("stream_bytes"))
      KTX_RETURN_IF_ERROR(g.integer("stream_bytes", 0, kMax, &out->gpu.stream_bytes));
  }
  return Status::ok();
}

Status decode_program(const json& j, Plan* out) {
  Fields f(j, "");
  KTX_RETURN_IF_ERROR(f.check_object({"producer", "ops"}, {"buffers"}));
  KTX_RETURN_IF_ERROR(f.str("producer", &out->producer));
  const json& ops = j.at("ops");
  if (!ops.is_array()) return Error("ops: expected an array, found {}", kind_of(ops));
  out->program.clear();
  for (size_t i = 0; i < ops.size(); ++i) {
    PlanOp op;
    KTX_RETURN_IF_ERROR(decode_op(ops[i], i, &op));
    out->program.push_back(std::move(op));
  }
  out->buffers.clear();
  if (j.contains("buffers")) {
    const json& bufs = j.at("buffers");
    if (!bufs.is_array()) return Error("buffers: expected an array, found {}", kind_of(bufs));
    for (size_t i = 0; i < bufs.size(); ++i) {
      Fields b(bufs[i], fmt::format("buffers[{}]", i));
      KTX_RETURN_IF_ERROR(b.check_object({"kind", "width"}));
      PlanBuffer pb;
      KTX_RETURN_IF_ERROR(b.str("kind", &pb.kind));
      if (pb.kind != "act" && pb.kind != "route")
        return Error("buffers[{}].kind: expected \"act\" or \"route\", found \"{}\"", i, pb.kind);
      KTX_RETURN_IF_ERROR(b.integer("width", 1, int64_t{1} << 40, &pb.width));
      out->buffers.push_back(std::move(pb));
    }
  }
  // Every buffer an op names must exist.
  for (const PlanOp& op : out->program) {
    std::vector<int> used = op.in;
    if (op.out >= 0) used.push_back(op.out);
    for (int b : used)
      if (b >= static_cast<int>(out->buffers.size()))
        return Error("op '{}': buffer {} does not exist (the program has {})", op.name, b,
                     out->buffers.size());
  }
  return Status::ok();
}

}  // namespace ktx::plan_detail
