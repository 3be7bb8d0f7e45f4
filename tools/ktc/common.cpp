// Helpers shared by ktc's subcommands: the error/progress line format and how MLIR diagnostics
// reach the user (one line each, prefixed like every other ktc message).
#include <fmt/format.h>

#include <string>

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/raw_ostream.h"
#include "tools/ktc/commands.h"

namespace ktx::ktc {

int fail(const std::string& message) {
  fmt::print(stderr, "ktc: error: {}\n", message);
  return 1;
}

void progress(const std::string& message) { fmt::print(stderr, "ktc: {}\n", message); }

std::string version_string() { return std::string("ktc ") + KTX_VERSION + " (MLIR 16)"; }

namespace {

const char* severity_name(mlir::DiagnosticSeverity s) {
  switch (s) {
    case mlir::DiagnosticSeverity::Error: return "error";
    case mlir::DiagnosticSeverity::Warning: return "warning";
    case mlir::DiagnosticSeverity::Note: return "note";
    case mlir::DiagnosticSeverity::Remark: return "remark";
  }
  return "error";
}

void print_one(const mlir::Diagnostic& d, mlir::DiagnosticSeverity severity) {
  std::string loc;
  if (!d.getLocation().isa<mlir::UnknownLoc>()) {
    llvm::raw_string_ostream os(loc);
    // FileLineColLoc prints as "file":line:col; keep it plain for one-line messages.
    if (auto flc = d.getLocation().dyn_cast<mlir::FileLineColLoc>())
      os << flc.getFilename().getValue() << ":" << flc.getLine() << ":" << flc.getColumn();
    else
      d.getLocation().print(os);
    os << ": ";
  }
  fmt::print(stderr, "ktc: {}: {}{}\n", severity_name(severity), loc, d.str());
}

}  // namespace

void print_diagnostics_to_stderr(mlir::MLIRContext& ctx) {
  ctx.getDiagEngine().registerHandler([](mlir::Diagnostic& d) {
    print_one(d, d.getSeverity());
    for (const mlir::Diagnostic& note : d.getNotes()) print_one(note, note.getSeverity());
    return mlir::success();
  });
}

}  // namespace ktx::ktc
