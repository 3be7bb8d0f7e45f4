// Rendering of `ktx-run bench` results (see bench_report.h). The table copies llama-bench's
// layout so numbers can be set side by side with llama.cpp's; the profile reports time shares
// against the measured wall time, so what the op timers miss (norms, residual adds) shows as
// its own "other" row instead of vanishing.
#include "tools/ktx-run/bench_report.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace ktx::cli {
namespace {

std::string gib(uint64_t bytes) { return fmt::format("{:.2f} GiB", bytes / double(1ull << 30)); }

std::string model_label(const BenchHeader& h) { return fmt::format("{} {}L", h.arch, h.n_layer); }

// Every expert count of all layers, concatenated: the spread over the whole model.
std::vector<int64_t> all_layers(const OpProfile& p) {
  std::vector<int64_t> v;
  for (const auto& [layer, counts] : p.expert_tokens) v.insert(v.end(), counts.begin(), counts.end());
  return v;
}

// Ops only: "kind/phase" entries are parts of their op's time (attention/core, ...).
double timed_seconds(const OpProfile& p) {
  double s = 0;
  for (const auto& [kind, e] : p.by_kind)
    if (kind.find('/') == std::string::npos) s += e.seconds;
  return s;
}

std::string format_ops(const BenchTest& t, int reps) {
  const double wall = t.seconds > 0 ? t.seconds : timed_seconds(t.profile);
  std::string out = "| op | ms/run | % | calls/run |\n| --- | ---: | ---: | ---: |\n";
  auto row = [&](const std::string& kind, double s, double calls) {
    out += fmt::format("| {} | {:.3f} | {:.1f} | {:g} |\n", kind, 1e3 * s / reps,
                       wall > 0 ? 100.0 * s / wall : 0.0, calls / reps);
  };
  for (const auto& [kind, e] : t.profile.by_kind) row(kind, e.seconds, double(e.calls));
  // Whatever the op timers do not cover (norms, residual adds, the session's own work).
  row("other", std::max(0.0, wall - timed_seconds(t.profile)), 0);
  return out;
}

std::string spread_line(const ExpertSpread& s) {
  return fmt::format("min {} mean {:.1f} max {} tokens/expert, max/mean {:.2f}, unused {}/{} "
                     "({:.1f}%)",
                     s.min, s.mean, s.max, s.max_over_mean, s.unused, s.n_expert,
                     s.n_expert ? 100.0 * s.unused / s.n_expert : 0.0);
}

std::string format_load(const BenchTest& t) {
  const OpProfile& p = t.profile;
  if (p.expert_tokens.empty()) return "expert load: no MoE layer ran\n";
  std::string out;
  double worst = -1;
  int64_t worst_layer = -1;
  for (const auto& [layer, counts] : p.expert_tokens) {
    const ExpertSpread s = expert_spread(counts);
    out += fmt::format("expert load blk.{}: {}\n", layer, spread_line(s));
    if (s.max_over_mean > worst) worst = s.max_over_mean, worst_layer = layer;
  }
  out += fmt::format("expert load {} (all {} MoE layers): {}; worst layer blk.{} max/mean {:.2f}\n",
                     t.name, p.expert_tokens.size(), spread_line(expert_spread(all_layers(p))),
                     worst_layer, worst);
  return out;
}

nlohmann::json spread_json(const ExpertSpread& s) {
  return {{"n_expert", s.n_expert}, {"min", s.min},   {"mean", s.mean},
          {"max", s.max},           {"max_over_mean", s.max_over_mean}, {"unused", s.unused}};
}

nlohmann::json profile_json(const BenchTest& t, int reps) {
  nlohmann::json ops = nlohmann::json::object();
  for (const auto& [kind, e] : t.profile.by_kind)
    ops[kind] = {{"ms_per_run", 1e3 * e.seconds / reps}, {"calls_per_run", double(e.calls) / reps}};
  nlohmann::json layers = nlohmann::json::object();
  for (const auto& [layer, counts] : t.profile.expert_tokens) {
    nlohmann::json l = spread_json(expert_spread(counts));
    l["tokens_per_expert"] = counts;
    layers[fmt::format("{}", layer)] = std::move(l);
  }
  nlohmann::json j = {{"ms_per_run", 1e3 * t.seconds / reps}, {"ops", ops}, {"expert_load", layers}};
  if (!t.profile.expert_tokens.empty())
    j["expert_load_all"] = spread_json(expert_spread(all_layers(t.profile)));
  return j;
}

}  // namespace

double mean_of(const std::vector<double>& v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
}

double stddev_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean_of(v);
  double ss = 0;
  for (double x : v) ss += (x - m) * (x - m);
  return std::sqrt(ss / double(v.size() - 1));
}

ExpertSpread expert_spread(const std::vector<int64_t>& counts) {
  ExpertSpread s;
  s.n_expert = static_cast<int64_t>(counts.size());
  if (counts.empty()) return s;
  s.min = *std::min_element(counts.begin(), counts.end());
  s.max = *std::max_element(counts.begin(), counts.end());
  s.mean = double(std::accumulate(counts.begin(), counts.end(), int64_t{0})) / double(s.n_expert);
  s.max_over_mean = s.mean > 0 ? double(s.max) / s.mean : 0.0;
  s.unused = std::count(counts.begin(), counts.end(), int64_t{0});
  return s;
}

std::string format_header(const BenchHeader& h) {
  std::string out = fmt::format("host: {}, {} threads, isa tier {}\n", h.cpu, h.threads, h.isa_tier);
  out += fmt::format("plan: {}\n", h.plan_path);
  out += fmt::format("model: {}, {} layers, vocab {}, {} ({}), ctx {}\n", h.arch, h.n_layer,
                     h.n_vocab, gib(h.gguf_bytes), h.gguf_path, h.n_ctx);
  out += "kernels:\n" + h.kernels;
  if (!h.kernels.empty() && h.kernels.back() != '\n') out += '\n';
  if (!h.memory.empty()) out += h.memory + "\n";
  return out;
}

std::string format_table(const BenchHeader& h, const std::vector<BenchTest>& tests) {
  std::string out = "| model | size | threads | test | t/s |\n"
                    "| --- | ---: | ---: | ---: | ---: |\n";
  for (const BenchTest& t : tests) {
    out += fmt::format("| {} | {} | {} | {} | {:.2f} ± {:.2f} |\n", model_label(h),
                       gib(h.gguf_bytes), h.threads, t.name, mean_of(t.samples_ts),
                       stddev_of(t.samples_ts));
  }
  return out;
}

std::string format_profile(const std::vector<BenchTest>& tests, int reps) {
  std::string out;
  for (const BenchTest& t : tests) {
    if (t.profile.by_kind.empty()) continue;
    out += fmt::format("\nprofile {}: {:.3f} ms per run, {} timed run{}\n", t.name,
                       1e3 * t.seconds / reps, reps, reps == 1 ? "" : "s");
    out += format_ops(t, reps);
    out += format_load(t);
  }
  return out;
}

std::string format_json(const BenchHeader& h, const std::vector<BenchTest>& tests,
                        bool with_profile) {
  nlohmann::json header = {{"cpu", h.cpu},           {"threads", h.threads},
                           {"isa_tier", h.isa_tier}, {"plan", h.plan_path},
                           {"gguf", h.gguf_path},    {"arch", h.arch},
                           {"n_layer", h.n_layer},   {"n_vocab", h.n_vocab},
                           {"gguf_bytes", h.gguf_bytes}, {"n_ctx", h.n_ctx},
                           {"repetitions", h.repetitions}, {"kernels", h.kernels}, {"memory", h.memory}};
  nlohmann::json results = nlohmann::json::array();
  for (const BenchTest& t : tests) {
    nlohmann::json r = {{"test", t.name},
                        {"n_prompt", t.n_prompt},
                        {"n_gen", t.n_gen},
                        {"threads", h.threads},
                        {"avg_ts", mean_of(t.samples_ts)},
                        {"stddev_ts", stddev_of(t.samples_ts)},
                        {"samples_ts", t.samples_ts}};
    if (with_profile) r["profile"] = profile_json(t, h.repetitions);
    results.push_back(std::move(r));
  }
  nlohmann::json doc = {{"header", header}, {"results", results}};
  return doc.dump(2) + "\n";
}

}  // namespace ktx::cli
