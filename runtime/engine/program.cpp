// build_program: the checks that turn a plan's op list into what Session::forward runs, so a
// plan the runtime cannot execute is refused at load naming the op, never mid-generation.
// reference_program: the same op list for plan-less callers (see program.h).
#include "runtime/engine/program.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

#include "common/plan/buffer_alloc.h"

namespace ktx {
namespace {

constexpr struct {
  const char* name;
  OpKind kind;
  size_t n_in;  // operands with buffers (embed reads the token ids, which have none)
} kKinds[] = {
    {"embed", OpKind::embed, 0},
    {"rms_norm", OpKind::rms_norm, 1},
    {"attention", OpKind::attention, 1},
    {"add", OpKind::add, 2},
    {"dense_ffn", OpKind::dense_ffn, 1},
    {"router", OpKind::router, 1},
    {"routed_experts", OpKind::routed_experts, 2},
    {"shared_experts", OpKind::shared_experts, 1},
    {"lm_head", OpKind::lm_head, 1},
};

}  // namespace

const char* op_kind_name(OpKind kind) {
  for (const auto& k : kKinds)
    if (k.kind == kind) return k.name;
  return "?";
}

namespace {

// kt-stream's attributes (ProgramOp::stream_min_tokens): routed experts only, both counts
// positive integers.
Status read_stream_attrs(const PlanOp& op, ProgramOp& po) {
  auto it = op.attrs.find("stream");
  if (it == op.attrs.end()) return Status::ok();
  if (it->second != "gpu")
    return Error("plan op '{}': stream = '{}' (the runtime streams experts to \"gpu\" only)",
                 op.name, it->second);
  if (po.kind != OpKind::routed_experts)
    return Error("plan op '{}' ({}): only routed experts stream to the GPU", op.name, op.kind);
  auto count = [&](const char* key, int64_t& v) -> Status {
    auto a = op.attrs.find(key);
    if (a == op.attrs.end()) return Error("plan op '{}' streams to the GPU without {}", op.name, key);
    char* end = nullptr;
    const long long n = std::strtoll(a->second.c_str(), &end, 10);
    if (end == a->second.c_str() || *end != '\0' || n < 1)
      return Error("plan op '{}': {} = '{}' is not a positive integer", op.name, key, a->second);
    v = n;
    return Status::ok();
  };
  KTX_RETURN_IF_ERROR(count("stream_min_tokens", po.stream_min_tokens));
  return count("stream_chunk", po.stream_chunk);
}

}  // namespace

Expected<Program> build_program(const std::vector<PlanOp>& ops,
                                const std::vector<PlanBuffer>& buffers,
                                const std::vector<Backend*>& backends,
                                const std::string& why_no_gpu) {
  Program p;
  p.buffers = buffers;
  std::vector<bool> written(buffers.size(), false);
  for (const PlanOp& op : ops) {
    const auto* k = std::find_if(std::begin(kKinds), std::end(kKinds),
                                 [&](const auto& e) { return op.kind == e.name; });
    if (k == std::end(kKinds))
      return Error("plan op '{}': kind '{}' is not one this runtime runs", op.name, op.kind);
    if (op.out < 0)
      return Error("plan op '{}' has no buffers (the plan was made by an older ktc); re-run ktc "
                   "plan", op.name);
    if (op.in.size() != k->n_in)
      return Error("plan op '{}' ({}): reads {} buffers, expected {}", op.name, op.kind,
                   op.in.size(), k->n_in);
    for (int b : op.in)
      if (b < 0 || b >= static_cast<int>(buffers.size()) || !written[b])
        return Error("plan op '{}' reads buffer {} before any op wrote it", op.name, b);
    if (op.out >= static_cast<int>(buffers.size()))
      return Error("plan op '{}' writes buffer {}, which does not exist", op.name, op.out);
    const std::string want_kind = k->kind == OpKind::router ? "route" : "act";
    if (buffers[op.out].kind != want_kind)
      return Error("plan op '{}' writes buffer {} of kind {}, expected {}", op.name, op.out,
                   buffers[op.out].kind, want_kind);
    Backend* backend = nullptr;
    for (Backend* b : backends)
      if (op.device == b->device()) backend = b;
    if (!backend)
      return Error("plan op '{}' ({}) is placed on device '{}', which this ktx-run cannot run "
                   "here ({}); re-plan for the CPU (ktc plan --gpu off ...) or with this host's "
                   "profile (ktx-run probe -o host.toml; ktc plan --hw host.toml ...)",
                   op.name, op.kind, op.device,
                   op.device == "gpu" && !why_no_gpu.empty()
                       ? why_no_gpu
                       : fmt::format("no {} backend: this build or host has none", op.device));
    KTX_RETURN_IF_ERROR(backend->supports(op, k->kind)
                            .with_context(fmt::format("plan op '{}' on {}", op.name, op.device)));
    written[op.out] = true;
    auto attr = [&](const char* key) {
      auto it = op.attrs.find(key);
      return it == op.attrs.end() ? std::string() : it->second;
    };
    ProgramOp po{k->kind, op.name, op.layer, op.tensors, attr("kernel"), attr("kv_cache"),
                 op.in, op.out, backend};
    KTX_RETURN_IF_ERROR(read_stream_attrs(op, po));
    if (po.kind == OpKind::lm_head) p.logits_buffer = op.out;
    p.ops.push_back(std::move(po));
  }
  if (p.ops.empty() || p.ops.back().kind != OpKind::lm_head)
    return Error("plan program must end with its lm_head op");
  return p;
}

namespace {

// Builds the op list with ktc's buffer reuse (common/plan/buffer_alloc.h); each op names the
// buffers whose values it read last.
class RefBuilder {
 public:
  explicit RefBuilder(ReferenceProgram& p) : p_(p), alloc_(p.buffers) {}
  int op(const std::string& kind, const std::string& name, int layer,
         std::vector<std::string> tensors, std::vector<int> in, const char* out_kind,
         int64_t width, std::vector<int> release) {
    PlanOp o;
    o.kind = kind, o.name = name, o.layer = layer, o.device = "cpu";
    o.tensors = std::move(tensors);
    o.in = std::move(in);
    o.attrs["kernel"] = "reference";
    o.out = alloc_.take(out_kind, width);
    for (int b : release) alloc_.release(b);
    p_.ops.push_back(std::move(o));
    return p_.ops.back().out;
  }

 private:
  ReferenceProgram& p_;
  BufferAllocator alloc_;
};

}  // namespace

namespace {

// The GGUF tensors of a layer's ops, as ktc lists them (backends upload what ops name).
std::vector<std::string> attention_tensors(const ModelConfig& c, const std::string& pre) {
  std::vector<std::string> t;
  if (c.attn == AttnKind::MLA) {
    if (c.q_lora_rank > 0) t = {pre + "attn_q_a.weight", pre + "attn_q_a_norm.weight", pre + "attn_q_b.weight"};
    else t = {pre + "attn_q.weight"};
    t.push_back(pre + "attn_kv_a_mqa.weight");
    t.push_back(pre + "attn_kv_a_norm.weight");
    if (c.mla_layout == MlaLayout::KvB) {
      t.push_back(pre + "attn_kv_b.weight");
    } else {
      t.push_back(pre + "attn_k_b.weight");
      t.push_back(pre + "attn_v_b.weight");
    }
  } else {
    for (const char* m : {"q", "k", "v"}) {
      t.push_back(fmt::format("{}attn_{}.weight", pre, m));
      if (c.qkv_bias) t.push_back(fmt::format("{}attn_{}.bias", pre, m));
    }
    if (c.qk_norm) {
      t.push_back(pre + "attn_q_norm.weight");
      t.push_back(pre + "attn_k_norm.weight");
    }
  }
  t.push_back(pre + "attn_output.weight");
  return t;
}

std::vector<std::string> ffn_tensors(const std::string& pre, const std::string& suffix) {
  return {pre + "ffn_gate" + suffix + ".weight", pre + "ffn_up" + suffix + ".weight",
          pre + "ffn_down" + suffix + ".weight"};
}

}  // namespace

ReferenceProgram reference_program(const ModelConfig& c) {
  ReferenceProgram p;
  RefBuilder b(p);
  const int64_t D = c.n_embd;
  int h = b.op("embed", "token_embd", -1, {"token_embd.weight"}, {}, "act", D, {});
  for (int il = 0; il < c.n_layer; ++il) {
    const std::string pre = fmt::format("blk.{}.", il);
    int n = b.op("rms_norm", pre + "attn_norm", il, {pre + "attn_norm.weight"}, {h}, "act", D, {});
    int a = b.op("attention", pre + "attn", il, attention_tensors(c, pre), {n}, "act", D, {n});
    int h1 = b.op("add", pre + "attn_residual", il, {}, {h, a}, "act", D, {h, a});
    int m = b.op("rms_norm", pre + "ffn_norm", il, {pre + "ffn_norm.weight"}, {h1}, "act", D, {});
    int f;
    if (c.layer_is_dense(il)) {
      f = b.op("dense_ffn", pre + "ffn", il, ffn_tensors(pre, ""), {m}, "act", D, {m});
    } else {
      std::vector<std::string> rt = {pre + "ffn_gate_inp.weight"};
      if (c.exp_probs_bias) rt.push_back(pre + "exp_probs_b.bias");
      int r = b.op("router", pre + "ffn_router", il, rt, {m}, "route", c.n_expert_used, {});
      const bool shared = c.n_ff_shexp > 0;
      std::vector<int> rel = shared ? std::vector<int>{r} : std::vector<int>{r, m};
      f = b.op("routed_experts", pre + "ffn_moe", il, ffn_tensors(pre, "_exps"), {m, r}, "act", D, rel);
      if (shared) {
        std::vector<std::string> st = ffn_tensors(pre, "_shexp");
        if (c.shexp_gate) st.push_back(pre + "ffn_gate_inp_shexp.weight");
        int s = b.op("shared_experts", pre + "ffn_shexp", il, st, {m}, "act", D, {m});
        f = b.op("add", pre + "ffn_moe_shexp", il, {}, {f, s}, "act", D, {f, s});
      }
    }
    h = b.op("add", pre + "ffn_residual", il, {}, {h1, f}, "act", D, {h1, f});
  }
  int out = b.op("rms_norm", "output_norm", -1, {"output_norm.weight"}, {h}, "act", D, {h});
  b.op("lm_head", "output", -1, {c.tied_output ? "token_embd.weight" : "output.weight"}, {out},
       "act", c.n_vocab, {out});
  return p;
}

}  // namespace ktx
