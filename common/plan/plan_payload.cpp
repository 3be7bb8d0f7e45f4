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

  Status check_object(std::initializer_list<const char*> known) const {
    if (!j_.is_object()) return Error("{}: expected an object, found {}", label(), kind_of(j_));
    for (const auto& [k, v] : j_.items()) {
      bool ok = false;
      for (const char* kk : known) ok = ok || k == kk;
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
  KTX_RETURN_IF_ERROR(f.check_object({"name", "kind", "layer", "device", "tensors", "attrs"}));
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
  return json{{"cpu_isa", hw.cpu_isa}, {"gpu_arch", hw.gpu_arch}, {"threads", hw.threads}};
}

json encode_program(const Plan& plan) {
  json ops = json::array();
  for (const PlanOp& op : plan.program) {
    ops.push_back(json{{"name", op.name}, {"kind", op.kind}, {"layer", op.layer},
                       {"device", op.device}, {"tensors", op.tensors}, {"attrs", op.attrs}});
  }
  return json{{"producer", plan.producer}, {"ops", std::move(ops)}};
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
  KTX_RETURN_IF_ERROR(f.check_object({"cpu_isa", "gpu_arch", "threads"}));
  KTX_RETURN_IF_ERROR(f.str_array("cpu_isa", &out->cpu_isa));
  KTX_RETURN_IF_ERROR(f.str("gpu_arch", &out->gpu_arch));
  int64_t threads = 0;
  KTX_RETURN_IF_ERROR(f.integer("threads", 0, 1 << 20, &threads));
  out->threads = int(threads);
  return Status::ok();
}

Status decode_program(const json& j, Plan* out) {
  Fields f(j, "");
  KTX_RETURN_IF_ERROR(f.check_object({"producer", "ops"}));
  KTX_RETURN_IF_ERROR(f.str("producer", &out->producer));
  const json& ops = j.at("ops");
  if (!ops.is_array()) return Error("ops: expected an array, found {}", kind_of(ops));
  out->program.clear();
  for (size_t i = 0; i < ops.size(); ++i) {
    PlanOp op;
    KTX_RETURN_IF_ERROR(decode_op(ops[i], i, &op));
    out->program.push_back(std::move(op));
  }
  return Status::ok();
}

}  // namespace ktx::plan_detail
