// ktc plan / import / inspect: the end-to-end compiler path (GGUF -> IR -> placed IR ->
// kernels chosen -> plan)
// and its two windows (the IR of a model, the text dump of a plan).
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <string>
#include <system_error>

#include "common/hw/hw_profile.h"
#include "common/plan/plan.h"
#include "compiler/codegen/EmitPlan.h"
#include "compiler/import/ImportGGUF.h"
#include "compiler/Pipeline.h"
#include "compiler/passes/Passes.h"
#include "compiler/passes/StreamCost.h"
#include "mlir/Parser/Parser.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"
#include "tools/ktc/commands.h"

namespace ktx::ktc {
namespace {

// Parse argv with CLI11; returns -1 to go on, else the exit code (help: 0, bad flags: 1).
int parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(fmt::format("{} {}: {}", app.get_name(), "arguments", e.what()));
  }
  return -1;
}

// Write IR text to `path` ("-" = stdout).
Status write_ir(mlir::ModuleOp module, const std::string& path) {
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec, llvm::sys::fs::OF_Text);
  if (ec) return Error("cannot write IR to '{}': {}", path, ec.message());
  module.print(os);
  os.flush();
  if (os.has_error()) return Error("cannot write IR to '{}': {}", path, os.error().message());
  return Status::ok();
}

}  // namespace

int cmd_import(int argc, char** argv) {
  CLI::App app("Print the kt IR of a GGUF model", "ktc import");
  std::string model, out = "-";
  int64_t context = 0;
  app.add_option("model", model, "GGUF model file")->required();
  app.add_option("-o,--output", out, "where to write the IR (default: stdout)");
  app.add_option("--context", context, "KV-cache length to record (kt.context)")
      ->check(CLI::PositiveNumber);
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;

  mlir::MLIRContext ctx;
  print_diagnostics_to_stderr(ctx);
  auto module = kt::import_gguf(ctx, model, {context});
  if (!module) return fail(module.status().message());
  if (Status st = write_ir(**module, out); !st) return fail(st.message());
  return 0;
}

int cmd_plan(int argc, char** argv) {
  CLI::App app("Compile a GGUF model into an execution plan for a host", "ktc plan");
  std::string model, hw_path, out, emit_ir, kernels = "fast", kv_cache = "f16", gpu = "auto", gpu_ops,
              prefill_act = "auto", stream = "auto";
  int64_t context = 0, vram_budget = 0, stream_chunk = 0;
  bool explain = false;
  app.add_option("model", model, "GGUF model file")->required();
  app.add_option("--hw", hw_path, "host profile (TOML, from 'ktx-run probe')")->required();
  app.add_option("-o,--output", out, "plan file to write")->required();
  app.add_option("--gpu", gpu,
                 "auto: attention, dense layers, shared experts, routers, norms and lm_head on the "
                 "profile's GPU when it has one (routed experts stay on the CPU); on: require a "
                 "GPU; off: everything on the CPU (what ktx-run runs today)")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  app.add_option("--vram-budget", vram_budget,
                 "GPU memory the plan may use, e.g. 20GiB (default: the GPU's memory less the "
                 "profile's vram_reserve_bytes)")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::NonNegativeNumber);
  app.add_option("--gpu-ops", gpu_ops,
                 "op kinds the GPU may take, comma-separated, from rms_norm, add, router, "
                 "attention, shared_experts, dense_ffn, lm_head (default: all; the rest stay on "
                 "the CPU)");
  app.add_option("--emit-ir", emit_ir, "also write the placed kt IR to this file");
  app.add_option("--context", context, "KV-cache length (default: the profile's budget)")
      ->check(CLI::PositiveNumber);
  app.add_option("--kernels", kernels,
                 "kernels of every op: fast (generated GEMVs/GEMMs, int16-grade activations, "
                 "flash attention) or reference (exact float32)")
      ->check(CLI::IsMember({"fast", "reference"}));
  app.add_option("--kv-cache", kv_cache,
                 "KV cache element type of fast attention ops: f16, bf16, f32, or q8_0 (ggml's "
                 "8-bit blocks, 53% of f16's bytes); reference plans keep f32")
      ->check(CLI::IsMember({"f16", "bf16", "f32", "q8_0"}))
      ->capture_default_str();
  app.add_option("--prefill-act", prefill_act,
                 "activations of the AVX-512 (no AMX) K-quant prefill GEMM: i8 (int8 per 32 "
                 "elements, vpdpbusd, the faster), i16 (int16-grade, vpdpwssd, closer to "
                 "float), auto (= i8)")
      ->check(CLI::IsMember({"auto", "i8", "i16"}))
      ->capture_default_str();
  app.add_option("--stream", stream,
                 "long prompts: auto (a prefill call of enough tokens copies a routed-expert "
                 "layer to the GPU and computes it there, where the cost model from the "
                 "profile says that beats the CPU), on (the same, but an error when nothing can "
                 "stream: no GPU, no PCIe bandwidth in the profile, no VRAM left), off (routed "
                 "experts always on the CPU)")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  app.add_option("--stream-chunk", stream_chunk,
                 "most tokens per prefill call when a layer streams (default 0: the largest of "
                 "8192, 4096, 2048, 1024, 512 that fits the VRAM left, at most the context)")
      ->check(CLI::Range(int64_t{0}, kt::kMaxStreamChunk));
  app.add_flag("--explain", explain,
               "print per routed-expert layer the predicted CPU and GPU times and the choice "
               "(stdout)");
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;

  // 1. The host profile first: a bad one is the cheapest error to report.
  Expected<HwProfile> hw = HwProfile::load(hw_path);
  if (!hw) return fail(hw.status().message());
  if (context == 0) context = hw->budgets.context;

  // 2. Import.
  progress(fmt::format("importing {}", model));
  mlir::MLIRContext ctx;
  ctx.disableMultithreading();
  ctx.printOpOnDiagnostic(false);  // the messages name the op; its full text is noise
  print_diagnostics_to_stderr(ctx);
  auto module = kt::import_gguf(ctx, model, {context});
  if (!module) return fail(module.status().message());

  // 3. Place, check, choose kernels (errors arrive through the diagnostic handler).
  progress(fmt::format("placing on {} ({})", hw->cpu.model_name.empty() ? "the CPU"
                                                                         : hw->cpu.model_name,
                       hw_path));
  mlir::PassManager pm(&ctx);
  kt::build_plan_pipeline(pm, {hw_path, kernels, kv_cache, gpu, vram_budget, context, gpu_ops,
                                  prefill_act, stream, stream_chunk, explain});
  if (mlir::failed(pm.run(**module)))
    return fail("placement or kernel selection failed (see the errors above)");
  if (!emit_ir.empty())
    if (Status st = write_ir(**module, emit_ir); !st) return fail(st.message());

  // 4. Emit and write.
  Expected<Plan> plan = kt::emit_plan(**module, *hw, version_string());
  if (!plan) return fail(plan.status().message());
  progress(fmt::format("writing {} ({} ops)", out, plan->program.size()));
  if (Status st = write_plan(*plan, out); !st) return fail(st.message());
  return 0;
}

int cmd_emit(int argc, char** argv) {
  CLI::App app{"Write the plan of a placed kt IR file (ktc plan --emit-ir output, possibly edited "
               "or run through ktc opt)", "ktc emit"};
  std::string ir_path, hw_path, out;
  app.add_option("ir", ir_path, "kt IR file (text)")->required();
  app.add_option("--hw", hw_path, "host profile (TOML, from 'ktx-run probe')")->required();
  app.add_option("-o,--output", out, "plan file to write")->required();
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  Expected<HwProfile> hw = HwProfile::load(hw_path);
  if (!hw) return fail(hw.status().message());

  mlir::MLIRContext ctx;
  ctx.disableMultithreading();
  ctx.printOpOnDiagnostic(false);
  kt::register_ktc_dialects(ctx);
  print_diagnostics_to_stderr(ctx);
  if (!llvm::sys::fs::exists(ir_path)) return fail(fmt::format("{}: no such file", ir_path));
  mlir::OwningOpRef<mlir::ModuleOp> module = mlir::parseSourceFile<mlir::ModuleOp>(ir_path, &ctx);
  if (!module) return fail(fmt::format("{}: not valid kt IR (see the errors above)", ir_path));
  mlir::PassManager pm(&ctx);
  kt::build_emit_pipeline(pm);
  if (mlir::failed(pm.run(*module))) return fail("placement check failed (see the errors above)");
  Expected<Plan> plan = kt::emit_plan(*module, *hw, version_string());
  if (!plan) return fail(plan.status().message().empty() ? "emit failed" : plan.status().message());
  progress(fmt::format("writing {} ({} ops)", out, plan->program.size()));
  if (Status st = write_plan(*plan, out); !st) return fail(st.message());
  return 0;
}

int cmd_inspect(int argc, char** argv) {
  CLI::App app("Print the stable text dump of a plan", "ktc inspect");
  std::string path;
  app.add_option("plan", path, "plan file")->required();
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  Expected<Plan> plan = read_plan(path);
  if (!plan) return fail(plan.status().message());
  fmt::print("{}", plan_to_text(*plan));
  return 0;
}

}  // namespace ktx::ktc
