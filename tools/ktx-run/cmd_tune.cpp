// `ktx-run tune --hw host.toml [--model deepseek-v3|qwen3-30b-a3b|FILE.gguf] [--seconds S]`:
// measure which MoeConfig runs each routed-expert decode layer of a model fastest on this host
// and record the winners in host.toml's [tuned] table (everything else in the file is kept).
// Descriptors are built as the planner builds them: the layer shape, the weight types (Q4_K
// for the presets, each MoE layer's tensor types for a GGUF, one descriptor per distinct
// combination), decode max_tokens, and the strongest ISA tier the profile lists. Timing runs
// the real MoeDecode on random weights (tools/ktx-run/tune/tune.h). Tables go to stdout, progress to
// stderr.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/gguf/gguf.h"
#include "common/hw/cpu_features.h"
#include "common/hw/hw_profile.h"
#include "common/model/config.h"
#include "tools/ktx-run/tune/tune.h"
#include "tools/ktx-run/commands.h"

namespace ktx::cli {
namespace {

using cpu::MoeDesc;

MoeDesc base_desc(int64_t n_embd, int64_t n_ff, int64_t n_expert, int64_t top_k,
                  int64_t max_tokens, cpu::IsaTier isa) {
  MoeDesc d;
  d.n_embd = n_embd;
  d.n_ff = n_ff;
  d.n_expert = n_expert;
  d.top_k = top_k;
  d.max_tokens = max_tokens;
  d.isa = isa;
  return d;
}

// One descriptor per distinct (gate, up, down) type triple over the file's MoE layers.
Expected<std::vector<MoeDesc>> descs_from_gguf(const std::string& path, int64_t max_tokens,
                                               cpu::IsaTier isa) {
  KTX_ASSIGN_OR_RETURN(auto file, GGUFFile::open(path));
  KTX_ASSIGN_OR_RETURN(ModelConfig cfg, ModelConfig::from_gguf(*file));
  if (cfg.n_expert == 0) return Error("{}: not a mixture-of-experts model (no experts)", path);
  std::set<std::tuple<int, int, int>> seen;
  std::vector<MoeDesc> out;
  for (int64_t il = 0; il < cfg.n_layer; ++il) {
    if (cfg.layer_is_dense(il)) continue;
    const std::string blk = "blk." + std::to_string(il) + ".";
    GGMLType types[3];
    const char* names[3] = {"ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"};
    for (int i = 0; i < 3; ++i) {
      const GGUFTensorInfo* t = file->find_tensor(blk + names[i]);
      if (!t) return Error("{}: tensor '{}{}' is missing", path, blk, names[i]);
      types[i] = t->type;
    }
    if (!seen.insert({int(types[0]), int(types[1]), int(types[2])}).second) continue;
    MoeDesc d = base_desc(cfg.n_embd, cfg.n_ff_exp, cfg.n_expert, cfg.n_expert_used, max_tokens,
                          isa);
    d.gate_type = types[0];
    d.up_type = types[1];
    d.down_type = types[2];
    out.push_back(d);
  }
  return out;
}

Expected<std::vector<MoeDesc>> model_descs(const std::string& model, int64_t max_tokens,
                                           cpu::IsaTier isa) {
  const bool is_file = model.size() > 5 && model.compare(model.size() - 5, 5, ".gguf") == 0;
  if (is_file) return descs_from_gguf(model, max_tokens, isa);
  KTX_ASSIGN_OR_RETURN(cpu::MoeShape s, cpu::moe_preset(model));
  MoeDesc d = base_desc(s.n_embd, s.n_ff, s.n_expert, s.top_k, max_tokens, isa);
  d.gate_type = d.up_type = d.down_type = GGMLType::Q4_K;
  return std::vector<MoeDesc>{d};
}

}  // namespace

int cmd_tune(int argc, char** argv) {
  CLI::App app{"Time MoE kernel configurations on this host and record the fastest in "
               "host.toml [tuned]", "ktx-run tune"};
  std::string hw_path, model = "deepseek-v3";
  int64_t max_tokens = 16;
  double weight_gib = 2.0;
  cpu::TuneOptions opts;
  app.add_option("--hw", hw_path, "hardware profile to update (from `ktx-run probe`)")
      ->required();
  app.add_option("--model", model, "deepseek-v3, qwen3-30b-a3b or a .gguf file")
      ->capture_default_str();
  app.add_option("--seconds", opts.seconds, "time budget per descriptor")
      ->check(CLI::Range(0.01, 3600.0))->capture_default_str();
  app.add_option("--threads", opts.max_threads, "largest thread count tried (0: physical cores)")
      ->check(CLI::Range(0, 4096))->capture_default_str();
  app.add_option("--tokens", opts.tokens, "tokens per timed call")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}))->capture_default_str();
  app.add_option("--max-tokens", max_tokens, "descriptor max_tokens (decode batch bound)")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}))->capture_default_str();
  app.add_option("--weight-gib", weight_gib, "expert weights allocated for timing, GiB")
      ->check(CLI::Range(0.001, 1024.0))->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(e.what());
  }
  opts.max_weight_bytes = static_cast<uint64_t>(weight_gib * double(1ull << 30));
  opts.progress = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  // The profile's ISA picks the descriptor tier (as the planner does); it is loaded again by
  // tune_profile, which also writes it.
  auto hw = HwProfile::load(hw_path);
  if (!hw) return fail(hw.status().message());
  const CpuIsa cpu = detect_cpu_isa();
  const cpu::IsaTier tier = cpu::best_isa_tier(hw->cpu.isa);
  if (!cpu::isa_tier_supported(tier, cpu)) {
    return fail(fmt::format("{}: the profile lists ISA tier '{}' but this CPU lacks it; tune on "
                            "the host the profile describes", hw_path, cpu::isa_tier_name(tier)));
  }
  auto descs = model_descs(model, max_tokens, tier);
  if (!descs) return fail(descs.status().message());
  const Status st = cpu::tune_profile(hw_path, *descs, cpu, opts, [](const cpu::TuneResult& r) {
    std::printf("%s", cpu::format_tune_table(r).c_str());
    std::printf("  winner: %s (%.1f us, %.1f GB/s)\n\n", r.winner().config.to_string().c_str(),
                r.winner().us, r.winner().gbs);
    std::fflush(stdout);
  });
  if (!st) return fail(st.message());
  std::fprintf(stderr, "wrote %zu [tuned] entr%s to %s\n", descs->size(),
               descs->size() == 1 ? "y" : "ies", hw_path.c_str());
  return 0;
}

}  // namespace ktx::cli
