// `ktx-run tokenize --gguf FILE [--bos] [--special]`: tokenize all of stdin with the GGUF's
// tokenizer and print the ids on one line, separated by single spaces. The CLI face of
// runtime/text/tokenizer.h, used to compare KTX's tokenization with other implementations.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

#include "common/gguf/gguf.h"
#include "runtime/text/tokenizer.h"
#include "tools/ktx-run/commands.h"

namespace ktx::cli {

int cmd_tokenize(int argc, char** argv) {
  CLI::App app{"Print the token ids of stdin's text", "ktx-run tokenize"};
  std::string gguf_path;
  bool add_bos = false;
  bool parse_special = false;
  app.add_option("--gguf", gguf_path, "GGUF file whose tokenizer.ggml.* metadata to use")
      ->required();
  app.add_flag("--bos", add_bos, "prepend the BOS token");
  app.add_flag("--special", parse_special,
               "match control tokens such as <|im_end|> written in the text");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;
  }

  auto file = GGUFFile::open(gguf_path);
  if (!file) {
    fail(file.status().message());
    return 1;
  }
  auto tok = Tokenizer::from_gguf(**file);
  if (!tok) {
    fail(tok.status().message());
    return 1;
  }
  std::ios::sync_with_stdio(false);
  const std::string text{std::istreambuf_iterator<char>(std::cin),
                         std::istreambuf_iterator<char>()};
  if (std::cin.bad()) {
    fail("tokenize: error reading stdin");
    return 1;
  }
  std::string line;
  for (int32_t id : (*tok)->encode(text, add_bos, parse_special)) {
    if (!line.empty()) line += ' ';
    line += std::to_string(id);
  }
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stdout);
  return 0;
}

}  // namespace ktx::cli
