// String forms, validation and the default config choice for MoeDesc / MoeConfig. The string
// forms are "prefix:key=value,..." with a fixed key order; the parser demands every key exactly
// once and rejects unknown ones, so a plan written by a newer ktc is refused with a clear name
// instead of being run with a silently defaulted field.
#include "common/kernels/kernel_desc.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <vector>

namespace ktx::cpu {
namespace {

// Split "prefix:k=v,k=v" into a key -> value map; errors name the text and the bad part.
Expected<std::map<std::string, std::string>> split_fields(const std::string& text,
                                                          const std::string& prefix) {
  if (text.rfind(prefix + ":", 0) != 0) {
    return Error("'{}': expected it to start with '{}:'", text, prefix);
  }
  std::map<std::string, std::string> fields;
  size_t pos = prefix.size() + 1;
  while (pos <= text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(pos, end - pos);
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Error("'{}': field '{}' is not key=value", text, item);
    }
    if (!fields.emplace(item.substr(0, eq), item.substr(eq + 1)).second) {
      return Error("'{}': key '{}' appears twice", text, item.substr(0, eq));
    }
    pos = end + 1;
  }
  return fields;
}

// Take `key` out of `fields` (so leftovers are unknown keys).
Expected<std::string> take(std::map<std::string, std::string>& fields, const std::string& text,
                           const char* key) {
  auto it = fields.find(key);
  if (it == fields.end()) return Error("'{}': missing key '{}'", text, key);
  std::string v = it->second;
  fields.erase(it);
  return v;
}

Expected<int64_t> take_int(std::map<std::string, std::string>& fields, const std::string& text,
                           const char* key) {
  KTX_ASSIGN_OR_RETURN(std::string v, take(fields, text, key));
  int64_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size()) {
    return Error("'{}': key '{}': expected an integer, found '{}'", text, key, v);
  }
  return out;
}

// A GGML type name or an ISA tier name under `key`; errors name the text and the key.
Expected<GGMLType> take_type(std::map<std::string, std::string>& fields, const std::string& text,
                             const char* key) {
  KTX_ASSIGN_OR_RETURN(std::string name, take(fields, text, key));
  auto type = parse_ggml_type(name);
  if (!type) return type.status().with_context(fmt::format("'{}': key '{}'", text, key));
  return *type;
}

Expected<IsaTier> take_tier(std::map<std::string, std::string>& fields, const std::string& text) {
  KTX_ASSIGN_OR_RETURN(std::string name, take(fields, text, "isa"));
  auto tier = parse_isa_tier(name);
  if (!tier) return tier.status().with_context(fmt::format("'{}': key 'isa'", text));
  return *tier;
}

Status no_leftovers(const std::map<std::string, std::string>& fields, const std::string& text) {
  if (fields.empty()) return Status::ok();
  return Error("'{}': unknown key '{}'", text, fields.begin()->first);
}

}  // namespace

const char* isa_tier_name(IsaTier tier) {
  switch (tier) {
    case IsaTier::reference: return "reference";
    case IsaTier::avx2: return "avx2";
    case IsaTier::avx512: return "avx512";
    case IsaTier::amx: return "amx";
  }
  return "unknown";
}

Expected<IsaTier> parse_isa_tier(const std::string& name) {
  for (IsaTier t : {IsaTier::reference, IsaTier::avx2, IsaTier::avx512, IsaTier::amx}) {
    if (name == isa_tier_name(t)) return t;
  }
  return Error("unknown ISA tier '{}' (expected reference, avx2, avx512 or amx)", name);
}

bool isa_tier_supported(IsaTier tier, const CpuIsa& isa) {
  const bool avx2 = isa.avx2 && isa.fma && isa.f16c;
  const bool avx512 = avx2 && isa.avx512f && isa.avx512bw && isa.avx512vl && isa.avx512_vnni;
  const bool amx = avx512 && isa.amx_tile && isa.amx_int8 && isa.amx_bf16;
  switch (tier) {
    case IsaTier::reference: return true;
    case IsaTier::avx2: return avx2;
    case IsaTier::avx512: return avx512;
    case IsaTier::amx: return amx;
  }
  return false;
}

IsaTier best_isa_tier(const CpuIsa& isa) {
  for (IsaTier t : {IsaTier::amx, IsaTier::avx512, IsaTier::avx2}) {
    if (isa_tier_supported(t, isa)) return t;
  }
  return IsaTier::reference;
}

Expected<GGMLType> parse_ggml_type(const std::string& name) {
  for (uint32_t id = 0; id < 64; ++id) {
    int64_t be = 0, bb = 0;
    if (ggml_type_block(id, &be, &bb) && ggml_type_name(id) == name) {
      return static_cast<GGMLType>(id);
    }
  }
  return Error("unknown GGML type name '{}'", name);
}

std::string LinearDesc::to_string() const {
  return fmt::format("linear:type={},k={},n_rows={},isa={}",
                     ggml_type_name(static_cast<uint32_t>(type)), k, n_rows, isa_tier_name(isa));
}

Expected<LinearDesc> LinearDesc::parse(const std::string& text) {
  KTX_ASSIGN_OR_RETURN(auto fields, split_fields(text, "linear"));
  LinearDesc d;
  KTX_ASSIGN_OR_RETURN(d.type, take_type(fields, text, "type"));
  KTX_ASSIGN_OR_RETURN(d.k, take_int(fields, text, "k"));
  KTX_ASSIGN_OR_RETURN(d.n_rows, take_int(fields, text, "n_rows"));
  KTX_ASSIGN_OR_RETURN(d.isa, take_tier(fields, text));
  KTX_RETURN_IF_ERROR(no_leftovers(fields, text));
  KTX_RETURN_IF_ERROR(d.validate().with_context(text));
  return d;
}

Status LinearDesc::validate() const {
  if (k <= 0 || n_rows <= 0)
    return Error("linear: k={}, n_rows={}: both must be positive", k, n_rows);
  KTX_RETURN_IF_ERROR(check_type_supported(static_cast<uint32_t>(type)));
  auto bytes = ggml_row_bytes(type, k);
  if (!bytes) return bytes.status().with_context(fmt::format("linear: rows of {} elements", k));
  return Status::ok();
}

std::string MoeDesc::to_string() const {
  return fmt::format(
      "moe:n_embd={},n_ff={},n_expert={},top_k={},gate={},up={},down={},max_tokens={},isa={}",
      n_embd, n_ff, n_expert, top_k, ggml_type_name(static_cast<uint32_t>(gate_type)),
      ggml_type_name(static_cast<uint32_t>(up_type)),
      ggml_type_name(static_cast<uint32_t>(down_type)), max_tokens, isa_tier_name(isa));
}

Expected<MoeDesc> MoeDesc::parse(const std::string& text) {
  KTX_ASSIGN_OR_RETURN(auto fields, split_fields(text, "moe"));
  MoeDesc d;
  KTX_ASSIGN_OR_RETURN(d.n_embd, take_int(fields, text, "n_embd"));
  KTX_ASSIGN_OR_RETURN(d.n_ff, take_int(fields, text, "n_ff"));
  KTX_ASSIGN_OR_RETURN(d.n_expert, take_int(fields, text, "n_expert"));
  KTX_ASSIGN_OR_RETURN(d.top_k, take_int(fields, text, "top_k"));
  KTX_ASSIGN_OR_RETURN(d.max_tokens, take_int(fields, text, "max_tokens"));
  KTX_ASSIGN_OR_RETURN(d.gate_type, take_type(fields, text, "gate"));
  KTX_ASSIGN_OR_RETURN(d.up_type, take_type(fields, text, "up"));
  KTX_ASSIGN_OR_RETURN(d.down_type, take_type(fields, text, "down"));
  KTX_ASSIGN_OR_RETURN(d.isa, take_tier(fields, text));
  KTX_RETURN_IF_ERROR(no_leftovers(fields, text));
  KTX_RETURN_IF_ERROR(d.validate().with_context(text));
  return d;
}

Status MoeDesc::validate() const {
  if (n_embd <= 0 || n_ff <= 0 || n_expert <= 0 || top_k <= 0 || max_tokens <= 0) {
    return Error("moe: n_embd={}, n_ff={}, n_expert={}, top_k={}, max_tokens={}: all must be "
                 "positive", n_embd, n_ff, n_expert, top_k, max_tokens);
  }
  if (top_k > n_expert) return Error("moe: top_k={} exceeds n_expert={}", top_k, n_expert);
  const struct { const char* name; GGMLType type; int64_t row; } tensors[] = {
      {"gate", gate_type, n_embd}, {"up", up_type, n_embd}, {"down", down_type, n_ff}};
  for (const auto& t : tensors) {
    KTX_RETURN_IF_ERROR(check_type_supported(static_cast<uint32_t>(t.type))
                            .with_context(fmt::format("moe: {} weights", t.name)));
    auto bytes = ggml_row_bytes(t.type, t.row);
    if (!bytes) {
      return bytes.status().with_context(fmt::format("moe: {} rows of {} elements", t.name, t.row));
    }
  }
  return Status::ok();
}

std::string MoeConfig::to_string() const {
  return fmt::format("cfg:rows_per_task={},unroll={},threads={}{}", rows_per_task, unroll,
                     threads, prefill_act == 8 ? ",act=i8" : "");
}

Expected<MoeConfig> MoeConfig::parse(const std::string& text) {
  KTX_ASSIGN_OR_RETURN(auto fields, split_fields(text, "cfg"));
  MoeConfig c;
  KTX_ASSIGN_OR_RETURN(c.rows_per_task, take_int(fields, text, "rows_per_task"));
  KTX_ASSIGN_OR_RETURN(int64_t unroll, take_int(fields, text, "unroll"));
  KTX_ASSIGN_OR_RETURN(int64_t threads, take_int(fields, text, "threads"));
  c.unroll = static_cast<int>(std::clamp<int64_t>(unroll, -1, 1 << 20));
  c.threads = static_cast<int>(std::clamp<int64_t>(threads, -1, 1 << 20));
  if (fields.count("act")) {  // optional: absent means int16
    KTX_ASSIGN_OR_RETURN(std::string act, take(fields, text, "act"));
    if (act != "i8" && act != "i16") {
      return Error("'{}': key 'act': expected i8 or i16, found '{}'", text, act);
    }
    c.prefill_act = act == "i8" ? 8 : 16;
  }
  KTX_RETURN_IF_ERROR(no_leftovers(fields, text));
  KTX_RETURN_IF_ERROR(c.validate().with_context(text));
  return c;
}

Status MoeConfig::validate() const {
  if (rows_per_task <= 0) return Error("cfg: rows_per_task={} must be positive", rows_per_task);
  if (unroll < 1 || unroll > 4) return Error("cfg: unroll={} must be 1..4", unroll);
  if (threads < 0 || threads > 4096) return Error("cfg: threads={} must be 0..4096", threads);
  if (prefill_act != 8 && prefill_act != 16)
    return Error("cfg: prefill activations of {} bits (8 or 16)", prefill_act);
  return Status::ok();
}

MoeConfig select_moe_config(const MoeDesc& desc, int threads) {
  MoeConfig c;
  c.threads = std::max(threads, 0);
  // The hardest case to balance is one token: only top_k experts are active. Split the
  // narrower of the two GEMV phases (gate/up rows n_ff, down rows n_embd) into about four tasks
  // per thread, so both phases balance; tasks below 8 rows would cost more to hand out. Wide
  // rows (n_embd >= 4096) take two tasks per thread: longer contiguous weight streams per task
  // measured faster on the DeepSeek-V3 layer (16 threads: 512 rows 86-93 % of DRAM bandwidth at
  // 4 and 16 tokens against 80-88 % for 256, two runs; docs/performance.md), while the Qwen3
  // layer showed no consistent difference between 96, 128 and 512.
  const int64_t per_thread = desc.n_embd >= 4096 ? 2 : 4;
  const int64_t want_tasks = per_thread * std::max<int64_t>(threads, 1);
  const int64_t rows = std::min(desc.n_ff, desc.n_embd);
  c.rows_per_task = std::max<int64_t>(8, rows * desc.top_k / want_tasks);
  c.rows_per_task = std::min(c.rows_per_task, std::max(desc.n_ff, desc.n_embd));
  c.unroll = 2;
  return c;
}

}  // namespace ktx::cpu
