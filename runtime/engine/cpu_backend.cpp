// The CPU backend: runs every op kind of a program on the host, each through its layer
// function (attention.cpp, attention_mla.cpp, ffn.cpp, ops.cpp). Which kernels those use was
// fixed at load from the plan (fast linears and routed experts, or the float32 reference), so
// run() only moves buffers.
#include <fmt/format.h>

#include <algorithm>

#include "runtime/engine/engine_internal.h"
#include "runtime/engine/program.h"

namespace ktx {
namespace {

class CpuBackend final : public Backend {
 public:
  const char* device() const override { return "cpu"; }

  Status supports(const PlanOp& op, OpKind kind) const override {
    auto attr = [&](const char* key) {
      auto it = op.attrs.find(key);
      return it == op.attrs.end() ? std::string() : it->second;
    };
    const std::string kernel = attr("kernel");
    if (!kernel.empty() && kernel != "reference" && kernel != "gemv")
      return Error("kernel '{}' is not one the CPU backend has (reference, gemv)", kernel);
    if (kind == OpKind::attention) {
      const std::string k = attr("kind");
      if (!k.empty() && k != "gqa" && k != "mla")
        return Error("attention kind '{}' is not one the CPU backend has (gqa, mla)", k);
    }
    return Status::ok();
  }

  Status run(const ProgramOp& op, OpCall& call) override {
    const StepCtx& s = call.s;
    const ModelConfig& c = s.m.cfg;
    const int64_t T = s.n_tok, D = c.n_embd;
    auto act = [&](int b) { return call.arena.act[static_cast<size_t>(b)].data(); };
    float* out = act(op.out);
    switch (op.kind) {
      case OpKind::embed: {
        const Weight& embd = s.m.w(op.tensors.at(0));
        for (int64_t t = 0; t < T; ++t) {
          const float* row = embd.row(call.tokens[t], out + t * D);
          if (row != out + t * D) std::copy_n(row, D, out + t * D);
        }
        return Status::ok();
      }
      case OpKind::rms_norm: {
        std::vector<float> buf;
        const float* w = small_tensor(s.m.w(op.tensors.at(0)), buf);
        const float* x = act(op.in[0]);
        cpu::parallel_range(s.pool, T, 4, [&](int64_t t0, int64_t t1) {
          for (int64_t t = t0; t < t1; ++t) rms_norm(x + t * D, w, out + t * D, D, c.rms_eps);
        });
        return Status::ok();
      }
      case OpKind::attention: {
        LayerCache lc = call.cache.layer(op.layer);
        if (c.attn == AttnKind::MLA) attention_mla(s, op.layer, act(op.in[0]), lc, out);
        else attention_gqa(s, op.layer, act(op.in[0]), lc, out);
        return Status::ok();
      }
      case OpKind::add: {
        const float* a = act(op.in[0]);
        const float* b = act(op.in[1]);
        cpu::parallel_range(s.pool, T * D, 1 << 16, [&](int64_t i0, int64_t i1) {
          for (int64_t i = i0; i < i1; ++i) out[i] = a[i] + b[i];
        });
        return Status::ok();
      }
      case OpKind::dense_ffn:
        ffn_dense(s, fmt::format("blk.{}.", op.layer), "", act(op.in[0]), out);
        return Status::ok();
      case OpKind::router:
        route_tokens(s, op.layer, act(op.in[0]), call.arena.route_ids[op.out].data(),
                     call.arena.route_weights[op.out].data());
        return Status::ok();
      case OpKind::routed_experts:
        return routed_experts(s, op.layer, act(op.in[0]), call.arena.route_ids[op.in[1]].data(),
                              call.arena.route_weights[op.in[1]].data(), out);
      case OpKind::shared_experts:
        shared_experts(s, op.layer, act(op.in[0]), out);
        return Status::ok();
      case OpKind::lm_head: {
        StepCtx head = s;
        head.n_tok = T - call.first_logit;
        linear(head, op.tensors.at(0), act(op.in[0]) + call.first_logit * D, out);
        return Status::ok();
      }
    }
    return Error("op '{}': unknown kind", op.name);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace ktx
