// --kt-place: record on every kt op the device that runs it. Every op must be runnable on the
// CPU (its weights have a CPU kernel; any other weight type is an error at the op, with a note
// naming what the host offers, so a user sees both sides of the mismatch). With a GPU in the
// profile, the ops that pay for GPU memory most (per layer: norms, residual adds, router,
// attention with its KV cache; then shared experts, dense FFNs, the lm_head) go to the GPU
// while the VRAM budget holds; routed experts and the embedding lookup stay on the CPU:
//
//   %a = kt.attention "blk.0.attn"(%n) {...}            // before
//   %a = kt.attention "blk.0.attn"(%n) {device = "cpu", ...}   // after
//
//   error: 'kt.routed_experts' op blk.17.ffn_down_exps.weight: IQ4_XS (23) has no CPU kernel
//   note: host.toml: CPU 'Xeon ...' with avx2 fma ...; CPU kernels read F32 F16 BF16 ...
#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/hw/hw_profile.h"
#include "common/quant/quant.h"
#include "compiler/ir/KtDialect.h"
#include "compiler/passes/GgmlTypes.h"
#include "compiler/passes/Passes.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

namespace ktx::kt {

#define GEN_PASS_DEF_KTPLACE
#include "compiler/passes/Passes.h.inc"

namespace {

std::string host_summary(const std::string& path, const HwProfile& hw) {
  std::string isa;
  for (const std::string& n : hw.cpu.isa.names()) isa += (isa.empty() ? "" : " ") + n;
  return path + ": CPU '" + hw.cpu.model_name + "' with " + (isa.empty() ? "no SIMD" : isa) +
         "; CPU kernels read " + supported_weight_types();
}

// Fails (with the error emitted at the op) on the first weight no CPU kernel can read.
mlir::LogicalResult check_cpu_weights(mlir::Operation* op, const std::string& host_note) {
  for (TensorAttr w : view_kt_op(op).weights) {
    std::optional<uint32_t> id = ggml_type_id(w.getGgmlType());
    if (id && ggml_type_supported(*id)) continue;
    std::string type = id ? ggml_type_name(*id) + " (" + std::to_string(*id) + ")"
                          : "'" + w.getGgmlType().str() + "' (unknown type name)";
    auto diag = op->emitError() << w.getName() << ": " << type << " has no CPU kernel";
    diag.attachNote() << host_note;
    return mlir::failure();
  }
  return mlir::success();
}

// Weight types the GPU kernels read in place (runtime/cuda/kernels.h).
bool gpu_reads(uint32_t type) {
  switch (static_cast<GGMLType>(type)) {
    case GGMLType::F32: case GGMLType::F16: case GGMLType::BF16: case GGMLType::Q4_0:
    case GGMLType::Q5_0: case GGMLType::Q8_0: case GGMLType::Q4_K: case GGMLType::Q5_K:
    case GGMLType::Q6_K:
      return true;
    default:
      return false;
  }
}

int64_t int_attr(mlir::Operation* op, const char* name) {
  auto a = op->getAttrOfType<mlir::IntegerAttr>(name);
  return a ? a.getInt() : 0;
}

// GPU priority of an op kind (lower first); -1: stays on the CPU (routed experts: the CPU's
// job by design; the embedding: a row lookup in a table that would cost VRAM for nothing).
int gpu_priority(mlir::Operation* op) {
  const llvm::StringRef k = op->getName().getStringRef();
  if (k == "kt.rms_norm" || k == "kt.add" || k == "kt.router") return 0;
  if (k == "kt.attention") return 1;
  if (k == "kt.shared_experts") return 2;
  if (k == "kt.dense_ffn") return 3;
  if (k == "kt.lm_head") return 4;
  if (k == "kt.linear") return 5;
  return -1;
}

// KV cache bytes of an attention op for ctx positions (2-byte elements: f16 / bf16 caches).
uint64_t kv_bytes(mlir::Operation* op, int64_t ctx) {
  if (op->getName().getStringRef() != "kt.attention") return 0;
  auto kind = op->getAttrOfType<mlir::StringAttr>("kind");
  int64_t per_token = 0;
  if (kind && kind.getValue() == "mla")
    per_token = int_attr(op, "kv_lora_rank") + int_attr(op, "qk_rope_dim");
  else
    per_token = int_attr(op, "n_head_kv") * (int_attr(op, "head_dim_k") + int_attr(op, "head_dim_v"));
  return static_cast<uint64_t>(ctx) * static_cast<uint64_t>(per_token) * 2;
}

std::string gib(uint64_t b) {
  if (b >= (1ull << 30)) return fmt::format("{:.2f} GiB", double(b) / double(1ull << 30));
  if (b >= (1ull << 20)) return fmt::format("{:.1f} MiB", double(b) / double(1ull << 20));
  return fmt::format("{:.1f} KiB", double(b) / 1024.0);
}

struct PlacePass : impl::KtPlaceBase<PlacePass> {
  using KtPlaceBase::KtPlaceBase;

  void runOnOperation() override {
    mlir::ModuleOp module = getOperation();
    // 1. Read the host profile; without one there is nothing to place onto.
    // Profile errors concern the option, not a place in the IR: no location.
    auto unknown = mlir::UnknownLoc::get(&getContext());
    if (hwPath.empty()) {
      mlir::emitError(unknown, "kt-place: no host profile; pass hw=host.toml (ktc opt: --hw=FILE)");
      return signalPassFailure();
    }
    Expected<HwProfile> hw = HwProfile::load(hwPath);
    if (!hw) {
      mlir::emitError(unknown, "kt-place: ") << hw.status().message();
      return signalPassFailure();
    }
    const std::string note = host_summary(hwPath, *hw);

    // 2. Every op goes to the CPU if its weights have a CPU kernel; report each one that
    //    does not (all of them, so one run lists every unsupported tensor).
    bool ok = true;
    mlir::Builder b(&getContext());
    module.walk([&](mlir::Operation* op) {
      if (!is_kt_op(op)) return;
      if (mlir::failed(check_cpu_weights(op, note))) {
        ok = false;
        return;
      }
      op->setAttr("device", b.getStringAttr("cpu"));
      op->removeAttr("gpu_bytes");
      op->removeAttr("gpu_upload");
    });
    if (!ok) return signalPassFailure();

    // 3. The GPU, when there is one and it is wanted.
    if (gpu != "auto" && gpu != "on" && gpu != "off") {
      mlir::emitError(unknown, "kt-place: gpu=") << gpu << ": expected auto, on or off";
      return signalPassFailure();
    }
    if (gpu == "off" || (gpu == "auto" && hw->gpus.empty())) return;
    if (hw->gpus.empty()) {
      mlir::emitError(unknown, "kt-place: gpu=on but ") << hwPath << " lists no [[gpu]]";
      return signalPassFailure();
    }
    if (mlir::failed(parse_gpu_ops(unknown))) return signalPassFailure();
    if (mlir::failed(place_gpu(module, *hw))) signalPassFailure();
  }

  // gpu-ops: the op kinds the GPU may take (all GPU-capable kinds when empty).
  std::set<std::string> gpu_kinds_;
  mlir::LogicalResult parse_gpu_ops(mlir::Location loc) {
    static const std::set<std::string> kKinds = {"rms_norm", "add", "router", "attention",
                                                 "shared_experts", "dense_ffn", "lm_head"};
    gpu_kinds_.clear();
    if (gpuOps.empty()) {
      gpu_kinds_ = kKinds;
      return mlir::success();
    }
    std::string list = gpuOps;
    size_t pos = 0;
    while (pos <= list.size()) {
      const size_t comma = std::min(list.find(',', pos), list.size());
      const std::string kind = list.substr(pos, comma - pos);
      if (!kKinds.count(kind)) {
        std::string known;
        for (const std::string& k : kKinds) known += (known.empty() ? "" : ", ") + k;
        mlir::emitError(loc, "kt-place: gpu-ops: '") << kind << "' is not an op kind the GPU "
                                                     << "takes (" << known << ")";
        return mlir::failure();
      }
      gpu_kinds_.insert(kind);
      pos = comma + 1;
    }
    return mlir::success();
  }

  mlir::LogicalResult place_gpu(mlir::ModuleOp module, const HwProfile& hw) {
    const GpuInfo& g = hw.gpus.front();
    int64_t n_ctx = ctx > 0 ? static_cast<int64_t>(ctx) : hw.budgets.context;
    if (ctx <= 0)
      if (auto c = module->getAttrOfType<mlir::IntegerAttr>(kContextAttr)) n_ctx = c.getInt();
    uint64_t budget = vramBudget > 0 ? static_cast<uint64_t>(vramBudget)
                      : g.memory_bytes > hw.budgets.vram_reserve_bytes
                          ? g.memory_bytes - hw.budgets.vram_reserve_bytes : 0;
    // The activation arena of a 512-token call: a few buffers of the widest activation.
    int64_t widest = 0;
    module.walk([&](mlir::Operation* op) {
      if (!is_kt_op(op) || op->getName().getStringRef() == "kt.lm_head") return;
      for (mlir::Type t : op->getResultTypes())
        if (auto a = mlir::dyn_cast<ActType>(t)) widest = std::max<int64_t>(widest, a.getWidth());
    });
    const uint64_t arena = 8ull * 512 * 4 * static_cast<uint64_t>(widest);
    mlir::Builder b(&getContext());
    if (budget <= arena) {
      module.emitRemark() << "GPU '" << g.name << "': a VRAM budget of " << gib(budget)
                          << " leaves no room past the activation arena (" << gib(arena)
                          << "); every op stays on the CPU";
      return mlir::success();
    }
    uint64_t left = budget - arena;

    // Candidates by op name: the module holds one function per phase (prefill, decode) whose
    // ops share their weights, so a name is placed once and counted once.
    struct Cand {
      std::vector<mlir::Operation*> ops;
      int priority = 0;
      int64_t layer = -1;
      uint64_t bytes = 0;
      std::string name;
    };
    std::vector<Cand> cands;
    std::map<std::string, size_t> by_name;
    std::vector<std::string> unreadable;
    module.walk([&](mlir::Operation* op) {
      if (!is_kt_op(op)) return;
      const int pr = gpu_priority(op);
      if (pr < 0) return;
      if (!gpu_kinds_.count(op->getName().getStringRef().drop_front(3).str())) return;
      const KtOpView v = view_kt_op(op);
      const std::string name = v.name.str();
      if (auto it = by_name.find(name); it != by_name.end()) {
        if (it->second != SIZE_MAX) cands[it->second].ops.push_back(op);
        return;
      }
      uint64_t bytes = kv_bytes(op, n_ctx);
      for (TensorAttr w : v.weights) {
        std::optional<uint32_t> id = ggml_type_id(w.getGgmlType());
        if (!id || !gpu_reads(*id)) {
          unreadable.push_back(name + " (" + w.getName().str() + ": " + w.getGgmlType().str() + ")");
          by_name[name] = SIZE_MAX;
          return;
        }
        bytes += ggml_tensor_bytes(w.getGgmlType(), w.getShape());
      }
      by_name[name] = cands.size();
      cands.push_back({{op}, pr, v.layer, bytes, name});
    });
    std::stable_sort(cands.begin(), cands.end(), [](const Cand& a, const Cand& c) {
      return a.priority != c.priority ? a.priority < c.priority : a.layer < c.layer;
    });
    uint64_t used = 0, spilled_bytes = 0;
    std::vector<std::string> spilled;
    for (const Cand& c : cands) {
      if (c.bytes > left) {
        spilled.push_back(c.name + " (" + gib(c.bytes) + ")");
        spilled_bytes += c.bytes;
        continue;
      }
      left -= c.bytes;
      used += c.bytes;
      for (mlir::Operation* op : c.ops) {
        op->setAttr("device", b.getStringAttr("gpu"));
        op->setAttr("gpu_bytes", b.getI64IntegerAttr(static_cast<int64_t>(c.bytes)));
        // Upload format of its weights: the GGUF blocks as stored (the kernels read them in place).
        if (!view_kt_op(op).weights.empty()) op->setAttr("gpu_upload", b.getStringAttr("gguf"));
      }
    }
    module->setAttr("kt.gpu", b.getDictionaryAttr({
        b.getNamedAttr("arch", b.getStringAttr(g.arch)),
        b.getNamedAttr("name", b.getStringAttr(g.name)),
        b.getNamedAttr("budget_bytes", b.getI64IntegerAttr(static_cast<int64_t>(budget))),
        b.getNamedAttr("arena_bytes", b.getI64IntegerAttr(static_cast<int64_t>(arena))),
        b.getNamedAttr("ctx", b.getI64IntegerAttr(n_ctx)),
    }));
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      for (size_t i = 0; i < v.size() && i < 3; ++i) s += (i ? ", " : "") + v[i];
      if (v.size() > 3) s += fmt::format(" and {} more", v.size() - 3);
      return s;
    };
    if (!spilled.empty())
      module.emitRemark() << spilled.size() << " op(s) stay on the CPU, " << gib(spilled_bytes)
                          << " past the GPU budget of " << gib(budget) << " ("
                          << gib(used) << " of weights and KV cache for " << n_ctx
                          << " positions placed, " << gib(arena) << " of activations): "
                          << list(spilled) << "; raise --vram-budget or lower --ctx";
    if (!unreadable.empty())
      module.emitRemark() << unreadable.size()
                          << " op(s) stay on the CPU: no GPU kernel reads their weight type: "
                          << list(unreadable);
    return mlir::success();
  }
};

}  // namespace
}  // namespace ktx::kt
