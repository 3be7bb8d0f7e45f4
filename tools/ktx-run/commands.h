// ktx-run subcommands. Each parses its own arguments (argv[0] is the subcommand name) and
// returns the process exit code; errors are printed as one clear message on stderr.
#pragma once

#include <cstdio>
#include <string_view>

namespace ktx::cli {

// The one form every ktx-run error takes: "ktx-run: error: MESSAGE" on stderr. Returns `code`
// so callers can `return fail(msg);`.
inline int fail(std::string_view msg, int code = 1) {
  std::fprintf(stderr, "ktx-run: error: %.*s\n", static_cast<int>(msg.size()), msg.data());
  return code;
}

int cmd_chat(int argc, char** argv);      // ktx-run PLAN [-p TEXT -n N] (chat or one-shot)
int cmd_eval(int argc, char** argv);      // ktx-run eval PLAN --ref FILE.ref.gguf [--dump DIR]
int cmd_bench(int argc, char** argv);     // ktx-run bench PLAN [-p 512,2048 -n 128 -r 3 --json]
int cmd_serve(int argc, char** argv);     // ktx-run serve PLAN [--host --port --api-key ...]
int cmd_tokenize(int argc, char** argv);  // ktx-run tokenize --gguf FILE < text
int cmd_probe(int argc, char** argv);     // ktx-run probe -o host.toml
int cmd_gen(int argc, char** argv);       // ktx-run gen PRESET -o model.gguf [--type Q4_K ...]
int cmd_tune(int argc, char** argv);      // ktx-run tune --hw host.toml [MODEL.gguf] (writes [tuned])

}  // namespace ktx::cli
