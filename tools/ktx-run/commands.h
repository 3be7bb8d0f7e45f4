// ktx-run subcommands. Each parses its own arguments (argv[0] is the subcommand name) and
// returns the process exit code; errors are printed as one clear message on stderr.
#pragma once

namespace ktx::cli {

int cmd_chat(int argc, char** argv);      // ktx-run PLAN [-p TEXT -n N] (chat or one-shot)
int cmd_eval(int argc, char** argv);      // ktx-run eval PLAN --ref FILE.ref.gguf [--dump DIR]
int cmd_tokenize(int argc, char** argv);  // ktx-run tokenize --gguf FILE < text
int cmd_probe(int argc, char** argv);     // ktx-run probe -o host.toml
int cmd_gen(int argc, char** argv);       // ktx-run gen PRESET -o model.gguf [--type Q4_K ...]

}  // namespace ktx::cli
