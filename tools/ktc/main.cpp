// ktc: the KTX compiler driver. Dispatches to a subcommand; `ktc opt` is handed its raw argv
// because it parses MLIR-style options (pass pipeline flags) with LLVM's parser.
#include <fmt/format.h>

#include <cstring>
#include <string>

#include "tools/ktc/commands.h"

namespace {

void usage() {
  fmt::print(stderr,
             "usage: ktc <command> [options]\n"
             "  plan     --hw host.toml MODEL.gguf -o MODEL.plan [--emit-ir FILE] [--context N]\n"
             "  import   MODEL.gguf [-o FILE] [--context N]   print the kt IR of a model\n"
             "  emit     FILE.mlir --hw host.toml -o MODEL.plan   plan of placed (edited) IR\n"
             "  opt      FILE.mlir [--kt-place --hw=host.toml] [--kt-verify-placed] [-o FILE]\n"
             "  inspect  MODEL.plan                            print a plan's text dump\n"
             "  --version\n"
             "Run 'ktc <command> --help' for a command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ktx::ktc;
  if (argc < 2) {
    usage();
    return 1;
  }
  const std::string cmd = argv[1];
  if (cmd == "--version" || cmd == "version") {
    fmt::print("{}\n", version_string());
    return 0;
  }
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    usage();
    return 0;
  }
  if (cmd == "plan") return cmd_plan(argc - 1, argv + 1);
  if (cmd == "import") return cmd_import(argc - 1, argv + 1);
  if (cmd == "opt") return cmd_opt(argc - 1, argv + 1);
  if (cmd == "inspect") return cmd_inspect(argc - 1, argv + 1);
  if (cmd == "emit") return cmd_emit(argc - 1, argv + 1);
  usage();
  return fail("unknown command '" + cmd + "' (expected plan, emit, import, opt, inspect)");
}
