// `ktx-run bench PLAN -p 512,2048 -n 128 -r 3`: prefill and decode throughput in llama-bench's
// terms. A test "ppN" is one Session::forward call over N tokens on an empty session (only the
// last token's logits, as a chat prefill asks; one session per test, reset before each run, its
// device state made by an untimed token first); "tgN" is N single-token forward calls after a
// one-token start, timed over the N steps. Each test runs -r times after one untimed warm-up
// of the smallest test (first-touch page faults and lazily built kernels would otherwise land
// in the first sample). Tokens are pseudo-random ids from a fixed seed, so two runs of the same
// plan compute the same thing. --profile times every op kind and counts tokens per routed
// expert, the spread that shows whether a random-weight model routes like a trained one.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/hw/cpu_features.h"
#include "common/util/rng.h"
#include "common/kernels/kernel_desc.h"
#include "runtime/engine/engine.h"
#include "tools/ktx-run/bench_report.h"
#include "tools/ktx-run/commands.h"

namespace ktx::cli {
namespace {

constexpr uint64_t kTokenSeed = 0x6b74782d62656e63ull;  // "ktx-benc"

struct BenchArgs {
  std::string plan_path, gguf_override, prompt_list = "512", cache_type;
  int64_t n_gen = 128;
  int reps = 3;
  int threads = 0;
  int64_t n_ctx = 0;
  bool json = false, profile = false, no_warmup = false;
};

// "512,2048" -> {512, 2048}; "0" alone -> {} (no prefill tests).
Expected<std::vector<int64_t>> parse_sizes(const std::string& text) {
  auto bad = [&] { return Error("-p: '{}' is not a list of positive integers", text); };
  if (text == "0") return std::vector<int64_t>{};
  std::vector<int64_t> sizes;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t end = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, end - pos);
    if (item.empty() || item.size() > 9 ||
        !std::all_of(item.begin(), item.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return bad();
    const int64_t v = std::stoll(item);
    if (v <= 0) return bad();
    sizes.push_back(v);
    pos = end + 1;
  }
  return sizes;
}

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon != std::string::npos) {
      const size_t first = line.find_first_not_of(' ', colon + 1);
      if (first != std::string::npos) return line.substr(first);
    }
  }
  const std::string brand = cpu_brand_string();
  return brand.empty() ? "unknown CPU" : brand;
}

// Same seed per (test size, repetition): every run of a plan feeds identical tokens.
std::vector<int32_t> bench_tokens(int64_t n, int64_t n_vocab, int rep, int64_t tag) {
  Xoshiro256 rng(kTokenSeed ^ (static_cast<uint64_t>(tag) * 0x9E3779B97F4A7C15ull) ^
                 static_cast<uint64_t>(rep));
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int32_t& id : ids) id = static_cast<int32_t>(rng.next_u64() % static_cast<uint64_t>(n_vocab));
  return ids;
}

using Clock = std::chrono::steady_clock;

// One repetition of `t`; returns its timed seconds. The profile (when given) sees only the
// timed part, so a tg test's one-token start is neither timed nor profiled.
// The session is the test's (reset here), as llama-bench keeps one context per test: its
// device state (GPU arena, KV cache, pinned host arena) is made once, outside the timing.
Expected<double> run_once(const Model& model, Session& s, const BenchTest& t, int rep,
                          OpProfile* profile) {
  s.reset();
  const int64_t n_vocab = model.config().n_vocab;
  if (t.n_prompt > 0) {
    const std::vector<int32_t> ids = bench_tokens(t.n_prompt, n_vocab, rep, t.n_prompt);
    s.set_profile(profile);
    const auto t0 = Clock::now();
    KTX_RETURN_IF_ERROR(s.forward(ids, false).status());
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    const DeviceStats ds = s.device_stats();
    if (ds.streamed_calls > 0 && rep == 0)  // routed experts streamed to the GPU (kt-stream)
      std::fprintf(stderr, "ktx-run: bench %s: %lld of %lld calls streamed %lld expert layers to "
                   "the GPU, %.2f GiB (%.1f GB/s over the test)\n", t.name.c_str(),
                   static_cast<long long>(ds.streamed_calls), static_cast<long long>(ds.calls),
                   static_cast<long long>(ds.streamed_layers), ds.streamed_bytes / 1073741824.0,
                   ds.streamed_bytes / 1e9 / sec);
    return sec;
  }
  const std::vector<int32_t> ids = bench_tokens(t.n_gen + 1, n_vocab, rep, -t.n_gen);
  KTX_RETURN_IF_ERROR(s.forward(std::span(ids).first(1), false).status());
  s.set_profile(profile);
  const auto t0 = Clock::now();
  const DeviceStats before = s.device_stats();
  for (int64_t i = 1; i <= t.n_gen; ++i)
    KTX_RETURN_IF_ERROR(s.forward(std::span(ids).subspan(static_cast<size_t>(i), 1), false).status());
  const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
  const DeviceStats after = s.device_stats();
  if (after.calls > before.calls) {
    // The GPU-driven step: how many steps replayed a graph, and the CPU's share of a step (the
    // GPU's work that does not overlap it is the rest).
    const double steps = static_cast<double>(after.calls - before.calls);
    const double step_ms = 1e3 * (after.call_seconds - before.call_seconds) / steps;
    const double host_ms = 1e3 * (after.host_seconds - before.host_seconds) / steps;
    std::fprintf(stderr, "ktx-run: bench %s: %lld graph launches for %lld decode steps; a step "
                 "takes %.3f ms, the CPU's ops %.3f ms of it (%.0f%%)\n", t.name.c_str(),
                 static_cast<long long>(after.graph_launches - before.graph_launches),
                 static_cast<long long>(after.calls - before.calls), step_ms, host_ms,
                 step_ms > 0 ? 100.0 * host_ms / step_ms : 0.0);
    if (after.timed_calls > before.timed_calls) {
      // Profiled steps: the GPU's busy time from the timing events around its ops.
      const double timed = static_cast<double>(after.timed_calls - before.timed_calls);
      const double wall_ms = 1e3 * (after.timed_call_seconds - before.timed_call_seconds) / timed;
      const double busy_ms = 1e3 * (after.device_seconds - before.device_seconds) / timed;
      std::fprintf(stderr, "ktx-run: bench %s: the GPU's ops run %.3f ms of a %.3f ms step; the "
                   "GPU idles %.3f ms (%.0f%%)\n", t.name.c_str(), busy_ms, wall_ms,
                   wall_ms - busy_ms, wall_ms > 0 ? 100.0 * (wall_ms - busy_ms) / wall_ms : 0.0);
    }
  }
  return sec;
}

Status run_test(const Model& model, const BenchArgs& a, int64_t n_ctx, BenchTest& t) {
  Session s(model, n_ctx);
  {  // one untimed token makes the session's device state
    const int32_t tok = 0;
    KTX_RETURN_IF_ERROR(s.forward(std::span<const int32_t>(&tok, 1), false).status());
  }
  for (int rep = 0; rep < a.reps; ++rep) {
    KTX_ASSIGN_OR_RETURN(double sec, run_once(model, s, t, rep, a.profile ? &t.profile : nullptr));
    t.seconds += sec;
    t.samples_ts.push_back(double(t.n_tokens()) / sec);
    std::fprintf(stderr, "ktx-run: bench %s run %d/%d: %.2f t/s\n", t.name.c_str(), rep + 1,
                 a.reps, t.samples_ts.back());
  }
  return Status::ok();
}

std::vector<BenchTest> make_tests(const std::vector<int64_t>& sizes, int64_t n_gen) {
  std::vector<BenchTest> tests;
  for (int64_t n : sizes) {
    BenchTest t;
    t.name = "pp" + std::to_string(n);
    t.n_prompt = n;
    tests.push_back(std::move(t));
  }
  if (n_gen > 0) {
    BenchTest t;
    t.name = "tg" + std::to_string(n_gen);
    t.n_gen = n_gen;
    tests.push_back(std::move(t));
  }
  return tests;
}

// Tokens a test keeps in its session: the prompt, or the start token plus the steps.
int64_t test_length(const BenchTest& t) { return t.n_prompt > 0 ? t.n_prompt : t.n_gen + 1; }

int parse_args(int argc, char** argv, BenchArgs& a, bool& done) {
  CLI::App app{"Measure prefill (ppN) and decode (tgN) throughput of a plan", "ktx-run bench"};
  app.add_option("plan", a.plan_path, "plan file written by ktc")->required();
  app.add_option("-p,--n-prompt", a.prompt_list,
                 "prefill sizes, comma-separated (one test ppN each; 0: none)")
      ->capture_default_str();
  app.add_option("-n,--n-gen", a.n_gen, "decode steps of the tg test (0: no tg test)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("-r,--repetitions", a.reps, "timed runs per test")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--threads", a.threads, "CPU threads (0 = the plan's choice)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--ctx", a.n_ctx, "session context (0 = largest prompt + n + 1)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--gguf", a.gguf_override, "use this GGUF instead of the path in the plan");
  app.add_option("--cache-type", a.cache_type,
                 "KV cache element type of fast-kernel attention, overriding the plan's (default: the "
                 "plan's kv_cache, f16; f16, bf16, f32 or q8_0; reference plans keep f32)")
      ->check(CLI::IsMember({"f16", "bf16", "f32", "q8_0"}));
  app.add_flag("--json", a.json, "print the results as one JSON document on stdout");
  app.add_flag("--profile", a.profile, "time each op kind and report the expert-load spread");
  app.add_flag("--no-warmup", a.no_warmup, "skip the untimed warm-up run");
  done = false;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    done = true;
    return app.exit(e) == 0 ? 0 : 2;
  }
  return 0;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  BenchArgs a;
  bool done = false;
  if (int rc = parse_args(argc, argv, a, done); done) return rc;
  auto sizes = parse_sizes(a.prompt_list);
  if (!sizes) return fail(sizes.status().message(), 2);
  std::vector<BenchTest> tests = make_tests(*sizes, a.n_gen);
  if (tests.empty()) return fail("nothing to run: -p 0 and -n 0", 2);
  const int64_t max_prompt = sizes->empty() ? 0 : *std::max_element(sizes->begin(), sizes->end());
  const int64_t n_ctx = a.n_ctx > 0 ? a.n_ctx : max_prompt + a.n_gen + 1;
  for (const BenchTest& t : tests) {
    if (test_length(t) > n_ctx)
      return fail(fmt::format("--ctx {} is too small for test {}, which needs {} tokens", n_ctx,
                              t.name, test_length(t)), 2);
  }

  EngineOptions opt;
  opt.threads = a.threads;
  opt.n_ctx = n_ctx;
  opt.kv_cache_type = a.cache_type;
  opt.progress = [](const std::string& m) { std::fprintf(stderr, "ktx-run: %s\n", m.c_str()); };
  auto lm = load_from_plan(a.plan_path, a.gguf_override, opt);
  if (!lm) return fail(lm.status().message(), 2);
  const ModelConfig& cfg = lm->model->config();

  BenchHeader h;
  h.cpu = cpu_model_name();
  h.threads = a.threads > 0 ? a.threads : lm->plan.hw.threads;  // as load_from_plan resolves it
  if (h.threads <= 0) h.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  h.isa_tier = cpu::isa_tier_name(cpu::best_isa_tier(detect_cpu_isa()));
  h.plan_path = a.plan_path;
  h.gguf_path = lm->gguf->path();
  h.arch = model_arch_name(cfg.arch);
  h.n_layer = cfg.n_layer;
  h.n_vocab = cfg.n_vocab;
  h.gguf_bytes = lm->gguf->total_size();
  h.n_ctx = n_ctx;
  h.repetitions = a.reps;
  h.kernels = lm->model->kernel_summary();
  {
    Session probe(*lm->model, h.n_ctx);  // the KV cache every test's session holds
    h.memory = memory_summary(*lm->model, &probe);
  }

  if (!a.no_warmup) {
    BenchTest warm = tests.front();  // the smallest pp test, else a short tg
    for (const BenchTest& t : tests)
      if (t.n_prompt > 0 && t.n_prompt < warm.n_prompt) warm = t;
    if (warm.n_prompt == 0) warm.n_gen = std::min<int64_t>(warm.n_gen, 8);
    Session ws(*lm->model, n_ctx);
    if (auto s = run_once(*lm->model, ws, warm, 0, nullptr); !s) return fail(s.status().message());
  }
  for (BenchTest& t : tests) {
    if (Status s = run_test(*lm->model, a, n_ctx, t); !s.is_ok()) return fail(s.message());
  }

  if (a.json) {
    std::fputs(format_json(h, tests, a.profile).c_str(), stdout);
    return 0;
  }
  std::fputs((format_header(h) + "\n" + format_table(h, tests)).c_str(), stdout);
  if (a.profile) std::fputs(format_profile(tests, a.reps).c_str(), stdout);
  return 0;
}

}  // namespace ktx::cli
