// `ktx-run eval PLAN --ref FILE.ref.gguf`: runs the plan's model on every sequence of a
// transformers reference file and prints how close it comes (see tools/ktx-run/eval/eval.h).
// The bounds depend on the kernels the plan chose (float32, or activation-quantizing: the
// reference file's row of the per-file table, printed with the result; see EvalOptions), and
// the kernels that ran are listed first. Exit 0 when every bound holds, 1 when one does not, 2 for usage or input errors.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <string>

#include "runtime/engine/engine.h"
#include "tools/ktx-run/eval/eval.h"
#include "tools/ktx-run/commands.h"

namespace ktx::cli {

int cmd_eval(int argc, char** argv) {
  CLI::App app{"Compare the model's logits with a transformers reference file", "ktx-run eval"};
  std::string plan_path, ref_path, dump_dir, gguf_override;
  int threads = 0;
  app.add_option("plan", plan_path, "plan file written by ktc")->required();
  app.add_option("--ref", ref_path, "reference file STEM.VARIANT.ref.gguf")->required();
  app.add_option("--dump", dump_dir, "write sequence I's prefill logits to DIR/I.f32 "
                                     "(little-endian float32 [T][n_vocab])");
  std::string cache_type;
  app.add_option("--cache-type", cache_type,
                 "KV cache element type of fast-kernel attention, overriding the plan's (default: the "
                 "plan's kv_cache, f16; f16, bf16, f32 or q8_0; reference plans keep f32)")
      ->check(CLI::IsMember({"f16", "bf16", "f32", "q8_0"}));
  app.add_option("--threads", threads, "CPU threads (0 = the plan's choice, else all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--gguf", gguf_override, "use this GGUF instead of the path in the plan");
  bool oracle = false;
  app.add_flag("--oracle", oracle,
               "fast-kernel plans: also run the kernels' exact oracle (same activation rounding, "
               "exact sums) and judge the kernels by it; KL/top-1 targets are then reported");
  bool force_prefill = false;
  app.add_flag("--force-prefill", force_prefill,
               "run the routed experts' prefill kernels on every call, however short (the plan "
               "uses them only from its prefill_min_tokens), so short references test them");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  EngineOptions opt;
  opt.threads = threads;
  opt.kv_cache_type = cache_type;
  if (force_prefill) opt.prefill_min_tokens = 1;
  opt.progress = [](const std::string& m) { std::fprintf(stderr, "ktx-run: %s\n", m.c_str()); };
  auto lm = load_from_plan(plan_path, gguf_override, opt);
  if (!lm) {
    fail(lm.status().message());
    return 2;
  }
  auto ref_file = GGUFFile::open(ref_path);
  if (!ref_file) {
    fail(ref_file.status().message());
    return 2;
  }
  auto ref = RefFile::load(**ref_file, lm->model->config());
  if (!ref) {
    fail(ref.status().message());
    return 2;
  }
  EvalOptions eopt;
  eopt.dump_dir = dump_dir;
  // Fast expert kernels quantize activations: the float32 bounds do not apply to them.
  eopt.quantized = lm->model->quantizes_activations();
  std::fputs(("kernels:\n" + lm->model->kernel_summary()).c_str(), stdout);
  std::unique_ptr<Model> oracle_model;
  if (oracle && eopt.quantized) {
    EngineOptions oopt = opt;
    oopt.threads = threads == 0 ? lm->plan.hw.threads : threads;  // as load_from_plan does
    oopt.progress = nullptr;
    auto kernels = moe_kernels_from_plan(lm->plan);
    if (!kernels) return fail(kernels.status().message(), 2);
    oopt.moe_kernels = std::move(*kernels);
    oopt.moe_oracle = true;
    auto m = Model::load(lm->plan.model, lm->gguf, oopt);
    if (!m) return fail(m.status().message(), 2);
    oracle_model = std::move(*m);
    eopt.oracle = oracle_model.get();
  }
  auto result = run_eval(*lm->model, *ref, eopt);
  if (!result) {
    fail(result.status().message());
    return 2;
  }
  const std::string title = fmt::format("eval {} against {} ({})", lm->gguf->path(), ref_path, ref->model);
  std::fputs(format_eval(*result, title).c_str(), stdout);
  return result->pass ? 0 : 1;
}

}  // namespace ktx::cli
