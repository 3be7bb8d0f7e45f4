// `ktx-run gen`: writes a random-weight GGUF model from a preset (runtime/gen), with a progress
// bar on stderr. `ktx-run gen --list` shows the presets with their parameter count and file
// size at the default type, without writing anything.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <map>
#include <string>

#include "tools/ktx-run/gen/generate.h"
#include "tools/ktx-run/gen/progress.h"
#include "tools/ktx-run/commands.h"

namespace ktx::cli {
namespace {

int fail(const Status& st) {
  ::ktx::cli::fail(st.message());
  return 1;
}

int list_presets() {
  fmt::print("{:<18} {:>10} {:>12}  {}\n", "preset", "params", "Q8_0 size", "description");
  for (const std::string& name : gen_preset_names()) {
    GenOptions o;
    o.preset = name;
    Expected<GenModelPlan> plan = gen_plan_model(o);
    Expected<std::string> desc = gen_preset_description(name);
    if (!plan) return fail(plan.status());
    const double n = static_cast<double>(plan->n_params);
    const std::string params = n >= 1e9 ? fmt::format("{:.2f}B", n / 1e9)
                                        : fmt::format("{:.2f}M", n / 1e6);
    fmt::print("{:<18} {:>10} {:>9.2f} GB  {}\n", name, params,
               plan->data_bytes / 1e9, desc ? *desc : std::string());
  }
  return 0;
}

// One line per group of tensors that got another type than requested ("attn_k_b (row 128):
// Q4_K -> Q5_0, 61 tensors"), so users see what llama-quantize-style fallbacks happened.
void report_fallbacks(const GenModelPlan& plan) {
  std::map<std::string, int> groups;
  for (const GenTensor& t : plan.tensors) {
    if (!t.fell_back() || t.ne.size() == 1) continue;
    std::string base = t.name;
    if (base.rfind("blk.", 0) == 0) base = base.substr(base.find('.', 4) + 1);
    groups[fmt::format("{} (rows of {}): {} -> {}", base, t.ne[0],
                       ggml_type_name(static_cast<uint32_t>(t.requested)),
                       ggml_type_name(static_cast<uint32_t>(t.type)))]++;
  }
  for (const auto& [what, n] : groups) {
    fmt::print(stderr, "note: {}, {} tensor{} (row length not a multiple of the block size)\n",
               what, n, n == 1 ? "" : "s");
  }
}

}  // namespace

int cmd_gen(int argc, char** argv) {
  CLI::App app{"Generate a random-weight GGUF model from a preset", "ktx-run gen"};
  std::string preset, type_name = "Q8_0";
  GenOptions opts;
  bool list = false;
  app.add_option("preset", preset, "model preset (see --list)");
  app.add_option("-o,--output", opts.output, "output .gguf file");
  app.add_option("--type", type_name, "weight type of the matrices (F32 F16 BF16 Q4_0 Q4_1 "
                 "Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K)")->capture_default_str();
  app.add_option("--layers", opts.n_layers, "cut the model to N layers (0: all)");
  app.add_option("--seed", opts.seed, "random seed (same seed, same bytes)")->capture_default_str();
  app.add_option("--threads", opts.n_threads, "generator threads (0: all cores)");
  app.add_flag("--force", opts.force, "overwrite an existing output file");
  app.add_flag("--list", list, "list presets with parameter count and size at Q8_0");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (list) return list_presets();
  if (preset.empty()) {
    fail(fmt::format("gen: no preset given; valid presets: {}",
               fmt::join(gen_preset_names(), ", ")));
    return 1;
  }
  Expected<GGMLType> type = gen_parse_type(type_name);
  if (!type) return fail(type.status());
  opts.preset = preset;
  opts.type = *type;
  Expected<GenModelPlan> plan = gen_plan_model(opts);
  if (!plan) return fail(plan.status());
  if (opts.output.empty()) return fail(Error("gen: no output path given (-o FILE.gguf)"));
  report_fallbacks(*plan);
  fmt::print(stderr, "gen: {} ({} layers, {:.2f}B parameters, {}) -> {}, {:.2f} GB\n", preset,
             plan->n_layers, plan->n_params / 1e9, type_name, opts.output,
             plan->data_bytes / 1e9);
  ProgressBar bar(stderr, "writing " + opts.output, isatty(STDERR_FILENO) != 0);
  opts.progress = [&bar](uint64_t done, uint64_t total) { bar.update(done, total); };
  Status st = generate_model(opts);
  if (!st.is_ok()) return fail(st);
  bar.finish();
  return 0;
}

}  // namespace ktx::cli
