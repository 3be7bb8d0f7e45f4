// EmitPlan: one PlanOp per kt op of @decode, in order, with the buffers it reads and writes
// (assign_buffers: the activation arena). The op's name/layer/device/weights map
// to PlanOp fields; every other attribute becomes a string in PlanOp::attrs, written so the
// text dump reads like the IR (integers in decimal, floats shortest round-trip, unit
// attributes as "true"). The plan's CPU features are those the chosen kernels need (the
// strongest tier recorded by --kt-select-kernels), so a plan of reference kernels runs anywhere.
#include "compiler/codegen/EmitPlan.h"

#if KTX_HAVE_NVRTC
#include "common/cuda/nvrtc.h"
#endif

#include <fmt/format.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "common/plan/buffer_alloc.h"
#include "compiler/ir/JsonAttr.h"
#include "compiler/ir/KtDialect.h"
#include "compiler/passes/KernelChoice.h"
#include "llvm/ADT/DenseMap.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace ktx::kt {
namespace {

// Attribute -> the string PlanOp::attrs stores; nullopt for kinds a plan has no use for.
std::optional<std::string> attr_text(mlir::Attribute a) {
  if (auto s = a.dyn_cast<mlir::StringAttr>()) return s.getValue().str();
  if (auto b = a.dyn_cast<mlir::BoolAttr>()) return b.getValue() ? "true" : "false";
  if (auto i = a.dyn_cast<mlir::IntegerAttr>()) return std::to_string(i.getInt());
  if (auto f = a.dyn_cast<mlir::FloatAttr>()) {
    // f32 attributes print as the float they hold, not its double expansion.
    if (f.getType().isF32()) return fmt::format("{}", static_cast<float>(f.getValueAsDouble()));
    return fmt::format("{}", f.getValueAsDouble());
  }
  if (a.isa<mlir::UnitAttr>()) return "true";
  return std::nullopt;
}

Expected<GGUFIdentity> read_identity(mlir::ModuleOp module) {
  auto dict = module->getAttrOfType<mlir::DictionaryAttr>(kGgufAttr);
  if (!dict) return Error("module attribute '{}' is missing or not a dictionary", kGgufAttr);
  GGUFIdentity id;
  auto path = dict.getAs<mlir::StringAttr>("path");
  auto hash = dict.getAs<mlir::StringAttr>("hash");
  auto size = dict.getAs<mlir::IntegerAttr>("size");
  auto splits = dict.getAs<mlir::IntegerAttr>("n_splits");
  if (!path || !hash || !size || !splits)
    return Error("module attribute '{}' needs path (string), size (integer), hash (string) and "
                 "n_splits (integer)", kGgufAttr);
  id.path = path.getValue().str();
  id.hash = hash.getValue().str();
  id.total_size = static_cast<uint64_t>(size.getInt());
  id.n_splits = static_cast<uint32_t>(splits.getInt());
  return id;
}

Expected<ModelConfig> read_config(mlir::ModuleOp module) {
  mlir::Attribute attr = module->getAttr(kConfigAttr);
  if (!attr) return Error("module attribute '{}' is missing", kConfigAttr);
  KTX_ASSIGN_OR_RETURN(nlohmann::json j, attr_to_json(attr));
  auto config = ModelConfig::from_json(j);
  if (!config) return config.status().with_context(std::string("module attribute ") + kConfigAttr);
  return config;
}

Expected<PlanOp> plan_op(mlir::Operation* op, int64_t context) {
  KtOpView v = view_kt_op(op);
  PlanOp p;
  p.name = v.name.str();
  p.kind = op->getName().stripDialect().str();
  p.layer = static_cast<int>(v.layer);
  auto device = op->getAttrOfType<mlir::StringAttr>("device");
  if (!device) return Error("op '{}' is not placed (no device); run --kt-place first", p.name);
  p.device = device.getValue().str();
  for (TensorAttr w : v.weights) p.tensors.push_back(w.getName().str());
  for (mlir::NamedAttribute a : op->getAttrs()) {
    llvm::StringRef key = a.getName().getValue();
    if (key == "name" || key == "layer" || key == "weights" || key == "device") continue;
    if (auto text = attr_text(a.getValue())) p.attrs[key.str()] = *text;
  }
  if (context > 0 && isa<AttentionOp>(op)) p.attrs["context"] = std::to_string(context);
  return p;
}

// The features the program's kernel descriptors need: those of the strongest tier among the
// kernel_decode / kernel_prefill attributes ("reference" and absent need none).
Expected<std::vector<std::string>> kernel_isa(const std::vector<PlanOp>& program) {
  cpu::IsaTier tier = cpu::IsaTier::reference;
  for (const PlanOp& op : program)
    for (const char* key : {"kernel_decode", "kernel_prefill"}) {
      auto it = op.attrs.find(key);
      if (it == op.attrs.end() || it->second == "reference") continue;
      auto desc = cpu::MoeDesc::parse(it->second);
      if (!desc) return desc.status().with_context(fmt::format("op '{}' attribute {}", op.name, key));
      tier = std::max(tier, desc->isa);
    }
  // Linear-layer kernels (--kt-select-kernels on attention, FFN, router, lm_head): "isa".
  for (const PlanOp& op : program) {
    auto it = op.attrs.find("isa");
    if (it == op.attrs.end()) continue;
    auto t = cpu::parse_isa_tier(it->second);
    if (!t) return t.status().with_context(fmt::format("op '{}' attribute isa", op.name));
    tier = std::max(tier, *t);
  }
  return isa_features_for(tier);
}

// The memory plan: every kt value gets a buffer of the arena. A buffer is reused once the
// last op reading its value has run (an op's output never shares a buffer with its own
// inputs, so kernels need not support aliasing); act and route buffers are separate pools.
// Function arguments (the token ids) have no buffer.
Status assign_buffers(llvm::ArrayRef<mlir::Operation*> ops, std::vector<PlanOp>& program,
                      std::vector<PlanBuffer>& buffers) {
  llvm::DenseMap<mlir::Value, size_t> last_use;
  for (size_t i = 0; i < ops.size(); ++i)
    for (mlir::Value v : ops[i]->getOperands()) last_use[v] = i;
  llvm::DenseMap<mlir::Value, int> buffer_of;
  BufferAllocator alloc(buffers);
  for (size_t i = 0; i < ops.size(); ++i) {
    mlir::Operation* op = ops[i];
    for (mlir::Value v : op->getOperands()) {
      auto it = buffer_of.find(v);
      if (it != buffer_of.end()) program[i].in.push_back(it->second);
    }
    if (op->getNumResults() != 1)
      return Error("op '{}' has {} results; kt ops have one", program[i].name, op->getNumResults());
    mlir::Value r = op->getResult(0);
    int b;
    if (auto a = r.getType().dyn_cast<ActType>()) b = alloc.take("act", a.getWidth());
    else if (auto t = r.getType().dyn_cast<RouteType>()) b = alloc.take("route", t.getTopK());
    else return Error("op '{}': result type is neither !kt.act nor !kt.route", program[i].name);
    buffer_of[r] = b;
    program[i].out = b;
    // Inputs whose last reader this op was are freed (after the output took its buffer).
    for (mlir::Value v : op->getOperands()) {
      auto it = buffer_of.find(v);
      if (it == buffer_of.end() || last_use[v] != i) continue;
      alloc.release(it->second);
      buffer_of.erase(it);
    }
  }
  return Status::ok();
}

// The GPU's share (the module's kt.gpu attribute from --kt-place) when any op is on the GPU.
// Hand-edited IR (an op moved to the GPU by hand) has no kt.gpu: the profile's first GPU
// gives the arch, if it has one; without one the plan names no arch and ktx-run refuses the op.
Status gpu_memory_plan(mlir::ModuleOp module, const HwProfile& hw, Plan& plan) {
  int64_t placed = 0;
  int n_gpu = 0;
  for (const PlanOp& op : plan.program) {
    if (op.device != "gpu") continue;
    ++n_gpu;
    auto it = op.attrs.find("gpu_bytes");
    if (it != op.attrs.end()) placed += std::stoll(it->second);
  }
  if (n_gpu == 0) return Status::ok();
  auto g = module->getAttrOfType<mlir::DictionaryAttr>("kt.gpu");
  if (!g) {
    if (hw.gpus.empty()) return Status::ok();
    plan.hw.gpu_arch = hw.gpus.front().arch;
    plan.hw.gpu.name = hw.gpus.front().name;
    plan.hw.gpu.placed_bytes = placed;
    return Status::ok();
  }
  auto str = [&](const char* k) {
    auto a = g.getAs<mlir::StringAttr>(k);
    return a ? a.getValue().str() : std::string();
  };
  auto num = [&](const char* k) {
    auto a = g.getAs<mlir::IntegerAttr>(k);
    return a ? a.getInt() : int64_t{0};
  };
  plan.hw.gpu_arch = str("arch");
  if (plan.hw.gpu_arch.empty()) return Error("kt.gpu has no arch");
  plan.hw.gpu.name = str("name");
  plan.hw.gpu.budget_bytes = num("budget_bytes");
  plan.hw.gpu.arena_bytes = num("arena_bytes");
  plan.hw.gpu.ctx = num("ctx");
  plan.hw.gpu.placed_bytes = placed;
  // Routed experts streamed in long prefill calls (--kt-stream): their slots and call buffers.
  plan.hw.gpu.stream_bytes = num("stream_bytes");
  // Pinned host buffers for the routed experts' input and output of a 512-token call.
  plan.hw.gpu.staging_bytes = 2 * 512 * 4 * plan.model.n_embd;
  return Status::ok();
}

// The GPU kernels for the plan's arch (NVRTC), when any op is on the GPU.
Status gpu_code(Plan& plan) {
  int n_gpu = 0;
  for (const PlanOp& op : plan.program) n_gpu += op.device == "gpu";
  if (n_gpu == 0 || plan.hw.gpu_arch.empty()) return Status::ok();
#if KTX_HAVE_NVRTC
  auto cubin = cuda::compile_kernels(plan.hw.gpu_arch);
  if (!cubin) return cubin.status();
  plan.gpu_code = std::move(*cubin);
  return Status::ok();
#else
  return Error("the plan puts {} op(s) on the GPU ({}), but this ktc was built without the CUDA "
               "toolkit (no NVRTC) and cannot compile their kernels; rebuild ktc where the "
               "toolkit is installed, or plan for the CPU with --gpu off", n_gpu, plan.hw.gpu_arch);
#endif
}

}  // namespace

Expected<Plan> emit_plan(mlir::ModuleOp module, const HwProfile& hw, const std::string& producer) {
  Plan plan;
  plan.producer = producer;
  KTX_ASSIGN_OR_RETURN(plan.gguf, read_identity(module));
  KTX_ASSIGN_OR_RETURN(plan.model, read_config(module));
  plan.hw.threads = hw.budgets.threads > 0 ? hw.budgets.threads : hw.cpu.physical_cores;

  int64_t context = hw.budgets.context;
  if (auto ctx = module->getAttrOfType<mlir::IntegerAttr>(kContextAttr)) context = ctx.getInt();

  auto fn = module.lookupSymbol<mlir::func::FuncOp>(kPlanProgram);
  if (!fn) return Error("module has no function @{} to emit as the plan's program", kPlanProgram);
  llvm::SmallVector<mlir::Operation*> ops;
  for (mlir::Operation& op : fn.getBody().getOps()) {
    if (!is_kt_op(&op)) continue;
    KTX_ASSIGN_OR_RETURN(PlanOp p, plan_op(&op, context));
    plan.program.push_back(std::move(p));
    ops.push_back(&op);
  }
  if (plan.program.empty()) return Error("function @{} has no kt ops", kPlanProgram);
  KTX_RETURN_IF_ERROR(assign_buffers(ops, plan.program, plan.buffers));
  KTX_ASSIGN_OR_RETURN(plan.hw.cpu_isa, kernel_isa(plan.program));
  KTX_RETURN_IF_ERROR(gpu_memory_plan(module, hw, plan));
  KTX_RETURN_IF_ERROR(gpu_code(plan));
  return plan;
}

}  // namespace ktx::kt
