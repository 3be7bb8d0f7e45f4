// --kt-stream: for long prompts, decide per routed-expert layer whether a prefill call copies
// the layer's experts to the GPU and computes it there instead of on the CPU. The cost model
// (StreamCost.h) compares the two per call size; this pass gathers its inputs from the IR
// (shapes, bytes, what --kt-place left of the VRAM budget) and records the decision:
//
//   %m = kt.routed_experts "blk.1.ffn_moe"(%h, %r) {device = "cpu", ...}        // before
//   %m = kt.routed_experts "blk.1.ffn_moe"(%h, %r) {device = "cpu", stream = "gpu",
//          stream_bytes = 905216 : i64, stream_chunk = 4096 : i64,
//          stream_min_tokens = 275 : i64, ...}                                   // after
//
//   module attributes {kt.gpu = {..., stream_bytes = 9437184 : i64}}
//
// Calls of at least stream_min_tokens tokens stream the layer; the runtime makes prefill calls
// of up to stream_chunk tokens when any op streams. Ops that stay on the CPU get none of these.
#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/hw/hw_profile.h"
#include "compiler/ir/KtDialect.h"
#include "compiler/passes/GgmlTypes.h"
#include "compiler/passes/Passes.h"
#include "compiler/passes/StreamCost.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/raw_ostream.h"

namespace ktx::kt {

#define GEN_PASS_DEF_KTSTREAM
#include "compiler/passes/Passes.h.inc"

namespace {

constexpr const char* kStreamAttrs[] = {"stream", "stream_min_tokens", "stream_chunk",
                                        "stream_bytes"};

int64_t int_attr(mlir::Operation* op, const char* name) {
  auto a = op->getAttrOfType<mlir::IntegerAttr>(name);
  return a ? a.getInt() : 0;
}

// One layer's model inputs from its op: the three expert tensors, their bytes as stored.
mlir::FailureOr<StreamLayer> layer_of(mlir::Operation* op) {
  const KtOpView v = view_kt_op(op);
  StreamLayer l;
  l.name = v.name.str();
  l.layer = v.layer;
  l.n_expert = int_attr(op, "n_expert");
  l.top_k = int_attr(op, "top_k");
  l.n_ff = int_attr(op, "n_ff");
  for (const char* part : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"}) {
    auto it = llvm::find_if(v.weights, [&](TensorAttr w) { return w.getName().contains(part); });
    if (it == v.weights.end() || it->getShape().empty())
      return op->emitError() << l.name << ": no weight named *" << part
                             << "* (expected gate, up and down expert tensors)";
    if (llvm::StringRef(part) == "ffn_gate_exps") l.n_embd = it->getShape()[0];
    l.bytes += ggml_tensor_bytes(it->getGgmlType(), it->getShape());
  }
  return l;
}

// The widest activation of the module, as --kt-place sizes its arena (the lm_head excluded).
int64_t widest_activation(mlir::ModuleOp module) {
  int64_t widest = 0;
  module.walk([&](mlir::Operation* op) {
    if (!is_kt_op(op) || op->getName().getStringRef() == "kt.lm_head") return;
    for (mlir::Type t : op->getResultTypes())
      if (auto a = mlir::dyn_cast<ActType>(t)) widest = std::max<int64_t>(widest, a.getWidth());
  });
  return widest;
}

struct StreamPass : impl::KtStreamBase<StreamPass> {
  using KtStreamBase::KtStreamBase;

  // Routed-expert layers on the CPU, one per op name (the phase functions share names).
  std::vector<StreamLayer> layers_;
  std::vector<std::vector<mlir::Operation*>> ops_;

  void runOnOperation() override {
    mlir::ModuleOp module = getOperation();
    auto unknown = mlir::UnknownLoc::get(&getContext());
    // 1. Options (errors concern the command line, not a place in the IR), old decisions out.
    if (stream != "auto" && stream != "on" && stream != "off") {
      mlir::emitError(unknown, "kt-stream: stream=") << stream << ": expected auto, on or off";
      return signalPassFailure();
    }
    if (streamChunk < 0 || streamChunk > kMaxStreamChunk) {
      mlir::emitError(unknown, "kt-stream: stream-chunk=")
          << static_cast<int64_t>(streamChunk) << ": expected 0 (choose) or a call size in [1, " << kMaxStreamChunk << "]";
      return signalPassFailure();
    }
    module.walk([&](RoutedExpertsOp op) {
      for (const char* a : kStreamAttrs) op->removeAttr(a);
    });
    auto gpu = module->getAttrOfType<mlir::DictionaryAttr>("kt.gpu");
    if (gpu && gpu.get("stream_bytes")) {
      llvm::SmallVector<mlir::NamedAttribute> kept;
      for (mlir::NamedAttribute a : gpu)
        if (a.getName() != "stream_bytes") kept.push_back(a);
      gpu = mlir::DictionaryAttr::get(&getContext(), kept);
      module->setAttr("kt.gpu", gpu);
    }
    if (stream == "off" && !explain) return;

    // 2. The host profile and the layers.
    if (hwPath.empty()) {
      mlir::emitError(unknown, "kt-stream: no host profile; pass hw=host.toml (ktc opt: --hw=FILE)");
      return signalPassFailure();
    }
    Expected<HwProfile> hw = HwProfile::load(hwPath);
    if (!hw) {
      mlir::emitError(unknown, "kt-stream: ") << hw.status().message();
      return signalPassFailure();
    }
    if (mlir::failed(collect_layers(module))) return signalPassFailure();
    if (layers_.empty()) {
      if (explain) llvm::outs() << "kt-stream: no routed-expert layers on the CPU\n";
      return;
    }

    // 3. Streaming needs a GPU in the plan and a PCIe bandwidth to cost the copies with.
    int n_gpu_ops = 0;
    module.walk([&](mlir::Operation* op) {
      auto d = is_kt_op(op) ? op->getAttrOfType<mlir::StringAttr>("device") : mlir::StringAttr();
      n_gpu_ops += d && d.getValue() == "gpu";
    });
    if (!gpu || n_gpu_ops == 0) {
      const std::string why = hw->gpus.empty()
                                  ? hwPath + " lists no [[gpu]]"
                                  : "no op is on the GPU (--gpu off, or nothing fit the budget)";
      if (stream == "on") {
        mlir::emitError(unknown, "kt-stream: stream=on but ") << why;
        return signalPassFailure();
      }
      if (explain)
        llvm::outs() << "kt-stream: " << why << "; every routed-expert layer runs on the CPU\n";
      return;
    }
    const StreamRates rates = stream_rates(*hw);
    if (rates.pcie_bytes_per_s <= 0) {
      const std::string why = hwPath + ": gpu[0].pcie_bw_gbs is 0 (not measured; `ktx-run probe` "
                              "measures it)";
      if (stream == "on") {
        mlir::emitError(unknown, "kt-stream: stream=on but ") << why;
        return signalPassFailure();
      }
      module.emitRemark() << "kt-stream: no layer streams: " << why;
      if (explain) llvm::outs() << "kt-stream: no layer streams: " << why << "\n";
      return;
    }

    // 4. The decision, within what --kt-place left of the budget.
    auto num = [&](const char* k) {
      auto a = gpu.getAs<mlir::IntegerAttr>(k);
      return a ? std::max<int64_t>(a.getInt(), 0) : int64_t{0};
    };
    const uint64_t budget = num("budget_bytes"), arena = num("arena_bytes");
    const uint64_t placed = placed_bytes(module);
    StreamRequest req;
    req.chunk = streamChunk;
    req.max_tokens = num("ctx");
    req.vram_left = budget > placed + arena ? budget - placed - arena : 0;
    req.widest_activation = widest_activation(module);
    StreamPlan plan = plan_streaming(layers_, rates, req);
    std::string why_not;
    if (plan.chunk == 0) {
      const int64_t tried = req.chunk > 0 ? req.chunk : kArenaTokens;
      const std::string room = fmt::format(
          "calls of {} tokens need {} of VRAM for streaming, {} is left (budget {} less {} "
          "placed and {} of arena); raise --vram-budget",
          tried, format_bytes(plan.vram_needed), format_bytes(req.vram_left),
          format_bytes(budget), format_bytes(placed), format_bytes(arena));
      if (stream == "on") {
        module.emitError() << "kt-stream: stream=on but " << room;
        return signalPassFailure();
      }
      why_not = "no layer streams: " + room;
      module.emitRemark() << "kt-stream: " << why_not;
      plan.chunk = tried;  // the table's call size
    } else if (stream == "off") {
      why_not = "stream=off: every layer stays on the CPU";
      std::fill(plan.min_tokens.begin(), plan.min_tokens.end(), 0);
      plan.n_streamed = 0;
      plan.vram_bytes = 0;
    } else if (plan.n_streamed == 0 && stream == "on") {
      module.emitRemark() << "kt-stream: stream=on, but no layer is faster on the GPU at "
                          << plan.chunk << " tokens per call";
    }

    // 5. Record it.
    if (plan.n_streamed > 0 && stream != "off") record(module, gpu, plan);
    if (explain) llvm::outs() << explain_streaming(layers_, rates, plan, plan.chunk, why_not);
  }

  mlir::LogicalResult collect_layers(mlir::ModuleOp module) {
    layers_.clear();
    ops_.clear();
    std::map<std::string, size_t> by_name;
    bool ok = true;
    module.walk([&](RoutedExpertsOp op) {
      auto device = op->getAttrOfType<mlir::StringAttr>("device");
      if (!device || device.getValue() != "cpu") return;
      const std::string name = view_kt_op(op).name.str();
      if (auto it = by_name.find(name); it != by_name.end()) {
        ops_[it->second].push_back(op);
        return;
      }
      mlir::FailureOr<StreamLayer> l = layer_of(op);
      if (mlir::failed(l)) {
        ok = false;
        return;
      }
      by_name[name] = layers_.size();
      layers_.push_back(*l);
      ops_.push_back({op});
    });
    return mlir::success(ok);
  }

  // gpu_bytes of the GPU ops, each op name once (the phases share weights and KV caches).
  static uint64_t placed_bytes(mlir::ModuleOp module) {
    std::map<std::string, int64_t> by_name;
    module.walk([&](mlir::Operation* op) {
      if (!is_kt_op(op)) return;
      auto d = op->getAttrOfType<mlir::StringAttr>("device");
      if (d && d.getValue() == "gpu")
        by_name[view_kt_op(op).name.str()] = std::max<int64_t>(int_attr(op, "gpu_bytes"), 0);
    });
    uint64_t sum = 0;
    for (const auto& [name, bytes] : by_name) sum += static_cast<uint64_t>(bytes);
    return sum;
  }

  void record(mlir::ModuleOp module, mlir::DictionaryAttr gpu, const StreamPlan& plan) {
    mlir::Builder b(&getContext());
    for (size_t i = 0; i < layers_.size(); ++i) {
      if (plan.min_tokens[i] <= 0) continue;
      for (mlir::Operation* op : ops_[i]) {
        op->setAttr("stream", b.getStringAttr("gpu"));
        op->setAttr("stream_min_tokens", b.getI64IntegerAttr(plan.min_tokens[i]));
        op->setAttr("stream_chunk", b.getI64IntegerAttr(plan.chunk));
        op->setAttr("stream_bytes", b.getI64IntegerAttr(static_cast<int64_t>(layers_[i].bytes)));
      }
    }
    llvm::SmallVector<mlir::NamedAttribute> entries(gpu.begin(), gpu.end());
    entries.push_back(b.getNamedAttr("stream_bytes",
                                     b.getI64IntegerAttr(static_cast<int64_t>(plan.vram_bytes))));
    module->setAttr("kt.gpu", b.getDictionaryAttr(entries));
  }
};

}  // namespace
}  // namespace ktx::kt
