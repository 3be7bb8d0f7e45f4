// ktc subcommands. Each takes its own argv (argv[0] is the subcommand name) and returns the
// process exit code; every user error is one "ktc: error: ..." message on stderr and exit 1.
#pragma once

#include <string>

namespace mlir {
class MLIRContext;
}

namespace ktx::ktc {

int cmd_plan(int argc, char** argv);     // ktc plan --hw host.toml MODEL -o PLAN [--emit-ir F]
                                         //   [--kernels fast|reference]
                                         //   [--stream auto|on|off] [--stream-chunk N] [--explain]
int cmd_import(int argc, char** argv);   // ktc import MODEL [-o FILE] [--context N]
int cmd_opt(int argc, char** argv);      // ktc opt FILE.mlir --kt-place --hw=host.toml
int cmd_inspect(int argc, char** argv);  // ktc inspect PLAN
int cmd_emit(int argc, char** argv);     // ktc emit FILE.mlir --hw host.toml -o PLAN

// Shared by the subcommands.
int fail(const std::string& message);        // prints "ktc: error: MESSAGE", returns 1
void progress(const std::string& message);   // prints "ktc: MESSAGE" on stderr
// Route the context's diagnostics to stderr as "ktc: error: LOC: msg" (+ "ktc: note: ...").
void print_diagnostics_to_stderr(mlir::MLIRContext& ctx);
std::string version_string();                // "ktc 0.1.0 (MLIR 16)"

}  // namespace ktx::ktc
