// ktc opt: the MLIR-style driver. Parses text IR, runs the passes named on the command line
// (each pass alone or a sequence: --kt-place --kt-verify-placed), prints the result. Supports
// --split-input-file (cases separated by "// -----") and --verify-diagnostics for lit tests.
//
// `--hw=FILE` is a shorthand that hands FILE to every pass with an `hw` option, so tests read
//   ktc opt in.mlir --kt-place --hw=host.toml
// instead of ktc opt in.mlir --kt-place=hw=host.toml (both work).
#include <fmt/format.h>

#include <string>
#include <vector>

#include "compiler/import/ImportGGUF.h"
#include "compiler/passes/Passes.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Support/ToolUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"
#include "tools/ktc/commands.h"

namespace ktx::ktc {
namespace {

// Passes that take the host profile through an `hw` option.
const char* const kPassesWithHw[] = {"kt-place", "kt-select-kernels", "kt-stream"};

// Pull --hw=FILE / --hw FILE out of argv and fold it into the options of the passes that take
// it. Returns the rewritten argument list (argv[0] kept).
std::vector<std::string> fold_hw_option(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  std::string hw;
  for (size_t i = 1; i < args.size();) {
    const std::string& a = args[i];
    if ((a == "--hw" || a == "-hw") && i + 1 < args.size()) {
      hw = args[i + 1];
      args.erase(args.begin() + i, args.begin() + i + 2);
    } else if (a.rfind("--hw=", 0) == 0 || a.rfind("-hw=", 0) == 0) {
      hw = a.substr(a.find('=') + 1);
      args.erase(args.begin() + i);
    } else {
      ++i;
    }
  }
  if (hw.empty()) return args;
  for (std::string& a : args)
    for (const char* pass : kPassesWithHw) {
      const std::string flag = std::string("--") + pass;
      if (a == flag) a = flag + "=hw=" + hw;
      else if (a.rfind(flag + "=", 0) == 0 && a.find("hw=") == std::string::npos)
        a += " hw=" + hw;
    }
  return args;
}

// Parse one buffer (a whole file or one split chunk), run the pipeline, print the result.
mlir::LogicalResult process_buffer(std::unique_ptr<llvm::MemoryBuffer> buffer,
                                   llvm::raw_ostream& os, const mlir::PassPipelineCLParser& pipeline,
                                   bool verify_diagnostics) {
  mlir::MLIRContext ctx;
  ctx.disableMultithreading();
  kt::register_ktc_dialects(ctx);
  ctx.allowUnregisteredDialects(false);
  // The op's text is in the source already; the diagnostic's location points at it.
  ctx.printOpOnDiagnostic(false);

  auto source_mgr = std::make_shared<llvm::SourceMgr>();
  source_mgr->AddNewSourceBuffer(std::move(buffer), llvm::SMLoc());

  // With --verify-diagnostics the verifier handler owns the diagnostics; otherwise they are
  // printed in ktc's one-line form.
  std::unique_ptr<mlir::SourceMgrDiagnosticVerifierHandler> verifier;
  if (verify_diagnostics)
    verifier = std::make_unique<mlir::SourceMgrDiagnosticVerifierHandler>(*source_mgr, &ctx);
  else
    print_diagnostics_to_stderr(ctx);

  auto run = [&]() -> mlir::LogicalResult {
    mlir::OwningOpRef<mlir::ModuleOp> module =
        mlir::parseSourceFile<mlir::ModuleOp>(*source_mgr, &ctx);
    if (!module) return mlir::failure();
    mlir::PassManager pm(&ctx);
    mlir::applyPassManagerCLOptions(pm);
    auto on_error = [&](const llvm::Twine& msg) {
      mlir::emitError(mlir::UnknownLoc::get(&ctx)) << msg;
      return mlir::failure();
    };
    if (mlir::failed(pipeline.addToPipeline(pm, on_error))) return mlir::failure();
    if (mlir::failed(pm.run(*module))) return mlir::failure();
    module->print(os);
    os << "\n";
    return mlir::success();
  };
  mlir::LogicalResult result = run();
  if (verifier) return verifier->verify();
  return result;
}

}  // namespace

int cmd_opt(int argc, char** argv) {
  // Local options: they exist only while `ktc opt` runs.
  llvm::cl::opt<std::string> input(llvm::cl::Positional, llvm::cl::desc("<input.mlir>"),
                                   llvm::cl::init("-"));
  llvm::cl::opt<std::string> output("o", llvm::cl::desc("output file"), llvm::cl::init("-"));
  llvm::cl::opt<bool> split("split-input-file",
                            llvm::cl::desc("process chunks separated by '// -----' separately"));
  llvm::cl::opt<bool> verify("verify-diagnostics",
                             llvm::cl::desc("check diagnostics against expected-* comments"));
  mlir::registerAsmPrinterCLOptions();
  mlir::registerMLIRContextCLOptions();
  mlir::registerPassManagerCLOptions();
  kt::register_kt_passes();
  mlir::PassPipelineCLParser pipeline("", "passes to run");

  std::vector<std::string> args = fold_hw_option(argc, argv);
  args[0] = "ktc opt";
  std::vector<const char*> cargs;
  for (const std::string& a : args) cargs.push_back(a.c_str());
  std::string cl_errors;
  llvm::raw_string_ostream cl_err(cl_errors);
  if (!llvm::cl::ParseCommandLineOptions(int(cargs.size()), cargs.data(),
                                         "ktc opt: run kt passes on text IR\n", &cl_err)) {
    cl_err.flush();
    std::string msg = cl_errors;
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    return fail(msg);
  }

  std::string error;
  std::unique_ptr<llvm::MemoryBuffer> buffer = mlir::openInputFile(input, &error);
  if (!buffer) return fail(fmt::format("cannot open IR file '{}': {}", input.getValue(), error));
  std::unique_ptr<llvm::ToolOutputFile> out = mlir::openOutputFile(output, &error);
  if (!out) return fail(fmt::format("cannot write '{}': {}", output.getValue(), error));

  auto chunk = [&](std::unique_ptr<llvm::MemoryBuffer> buf, llvm::raw_ostream& os) {
    return process_buffer(std::move(buf), os, pipeline, verify);
  };
  if (mlir::failed(mlir::splitAndProcessBuffer(std::move(buffer), chunk, out->os(), split,
                                               /*insertMarkerInOutput=*/true)))
    return 1;  // the diagnostics above say why
  out->keep();
  return 0;
}

}  // namespace ktx::ktc
