// ktx-run: the runtime's one binary. `ktx-run PLAN` chats; the first argument may instead name a
// subcommand (eval, bench, serve, tokenize, probe, tune, gen).
#include <cstdio>
#include <cstring>
#include <string>

#include "tools/ktx-run/commands.h"

namespace {

void print_usage() {
  std::fputs(
      "usage: ktx-run PLAN [options]            chat (interactive), or one-shot with -p TEXT\n"
      "       ktx-run eval PLAN --ref FILE      compare logits with a reference file\n"
      "       ktx-run bench PLAN -p N,M -n N    prefill and decode tokens per second\n"
      "       ktx-run serve PLAN [--port 8080]  OpenAI-compatible HTTP server\n"
      "       ktx-run tokenize --gguf FILE      print token ids of stdin's text\n"
      "       ktx-run probe -o host.toml        write this machine's hardware profile\n"
      "       ktx-run tune --hw host.toml       time kernel configs, record the winners\n"
      "       ktx-run gen PRESET -o FILE.gguf   generate a random-weight model\n"
      "Run 'ktx-run COMMAND --help' for a command's options.\n",
      stdout);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  using namespace ktx::cli;
  if (cmd == "eval") return cmd_eval(argc - 1, argv + 1);
  if (cmd == "bench") return cmd_bench(argc - 1, argv + 1);
  if (cmd == "serve") return cmd_serve(argc - 1, argv + 1);
  if (cmd == "tokenize") return cmd_tokenize(argc - 1, argv + 1);
  if (cmd == "probe") return cmd_probe(argc - 1, argv + 1);
  if (cmd == "gen") return cmd_gen(argc - 1, argv + 1);
  if (cmd == "tune") return cmd_tune(argc - 1, argv + 1);
  return cmd_chat(argc, argv);
}
