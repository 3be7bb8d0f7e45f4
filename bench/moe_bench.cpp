// ktx-moe-bench: the routed-expert layer at decode on this CPU, with the layer shapes of real
// models and random weights (Q4_K everywhere, the Q4_K_M mix: Q4_K gate/up, Q6_K down, or
// BF16). Each iteration routes the tokens to fresh random experts (so the weights come from
// memory, not cache, as in a real decode step) and runs MoeDecode. It prints the time per
// layer, the bytes of expert weights read, GB/s, the ratio to the memory bandwidth (--bw, or
// measured with probe_host), and TFLOP/s. Lists of --rows-per-task, --prefetch and --fused
// values sweep every combination over the same weights (allocated once per model and type
// mix).
//
//   ktx-moe-bench --model all --tokens 1,4,16 --threads 16 --types q4_k,q4_k_m
//   ktx-moe-bench --model qwen3-30b-a3b --rows-per-task 0,64,256 --prefetch none,t0:1536,t1:4096
//   ktx-moe-bench --model qwen3-30b-a3b --experts 32 --bw 80    (smaller footprint)
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "common/hw/cpu_features.h"
#include "common/hw/hw_profile.h"
#include "runtime/cpu/moe_decode.h"
#include "tools/ktx-run/tune/tune.h"

namespace {

using namespace ktx;
using namespace ktx::cpu;

// The layer shapes are the tuner's presets (tools/ktx-run/tune/tune.h).
using ModelShape = MoeShape;

// Where a block keeps its fp16 scales: set to small finite values so that sums stay finite
// (random bytes decoding to NaN would not change the timing, but would hide a kernel that
// reads the wrong block).
struct BlockScales {
  uint64_t block_bytes;
  int d_off, dmin_off;  // < 0: none
};

BlockScales block_scales(GGMLType t) {
  switch (t) {
    case GGMLType::Q5_K: return {176, 0, 2};
    case GGMLType::Q6_K: return {210, 208, -1};
    case GGMLType::BF16: return {2, -1, -1};  // no scales (fill_bf16 keeps values finite)
    default: return {144, 0, 2};  // Q4_K
  }
}

void fill_random(uint8_t* dst, uint64_t bytes, uint64_t seed) {
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (uint64_t i = 0; i + 8 <= bytes; i += 8) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    std::memcpy(dst + i, &s, 8);
  }
}

void fill_blocks(uint8_t* dst, uint64_t bytes, uint64_t seed, const BlockScales& bs) {
  fill_random(dst, bytes, seed);
  const uint16_t d = fp32_to_fp16(1e-3f), dmin = fp32_to_fp16(5e-4f);
  for (uint64_t b = 0; b + bs.block_bytes <= bytes; b += bs.block_bytes) {
    if (bs.d_off >= 0) std::memcpy(dst + b + bs.d_off, &d, 2);
    if (bs.dmin_off >= 0) std::memcpy(dst + b + bs.dmin_off, &dmin, 2);
  }
}

// BF16: random bits with the exponent's top bit cleared, so every value is finite (|x| < 2).
void fill_bf16(uint8_t* dst, uint64_t bytes, uint64_t seed) {
  fill_random(dst, bytes, seed);
  for (uint64_t i = 1; i < bytes; i += 2) dst[i] &= 0xbf;  // little endian: high byte
}

// One stacked tensor filled in parallel (the DeepSeek-V3 layer is 6 to 7 GB).
std::vector<uint8_t> random_tensor(GGMLType type, uint64_t bytes, uint64_t seed, int threads) {
  std::vector<uint8_t> t(bytes);
  const BlockScales bs = block_scales(type);
  const uint64_t chunk = ((bytes / threads) / bs.block_bytes + 1) * bs.block_bytes;
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    const uint64_t begin = std::min(bytes, i * chunk), end = std::min(bytes, begin + chunk);
    pool.emplace_back([&, begin, end, i] {
      if (type == GGMLType::BF16) {
        fill_bf16(t.data() + begin, end - begin, seed + i);
      } else {
        fill_blocks(t.data() + begin, end - begin, seed + i, bs);
      }
    });
  }
  for (auto& th : pool) th.join();
  return t;
}

// A sweep point: rows_per_task (0: select_moe_config), prefetch, fused.
struct Point {
  int64_t rows = 0;
  Avx512Tuning tuning;
  bool fused = true;
};

struct Options {
  std::string model = "all";
  std::vector<int64_t> tokens = {1, 4, 16};
  int threads = 0;
  int64_t experts = 0;  // 0: the model's count
  double bw = 0.0;      // GB/s; 0: measure
  int iters = 20;
  std::string isa = "";
  std::vector<std::string> types = {"q4_k"};      // q4_k or q4_k_m
  std::vector<int64_t> rows = {0};
  std::vector<std::string> prefetch = {"default"};  // none, default, or hint:bytes
  std::vector<int> fused = {1};
};

// "none", "default" or "<hint>:<bytes>".
Expected<Avx512Tuning> parse_prefetch(const std::string& text) {
  if (text == "default") return Avx512Tuning{};
  if (text == "none") return Avx512Tuning{PrefetchHint::none, 0};
  const size_t colon = text.find(':');
  if (colon == std::string::npos) {
    return Error("--prefetch '{}': expected none, default or <t0|t1|nta>:<bytes>", text);
  }
  KTX_ASSIGN_OR_RETURN(PrefetchHint h, parse_prefetch_hint(text.substr(0, colon)));
  Avx512Tuning t{h, std::atoi(text.substr(colon + 1).c_str())};
  KTX_RETURN_IF_ERROR(t.validate().with_context("--prefetch"));
  return t;
}

// Times one configuration at every token count; prints one line per count.
int run_point(const ModelShape& m, const Options& o, const MoeDesc& desc, const Point& pt,
              const MoeWeights& w, uint64_t expert_bytes, double bw, const CpuIsa& cpu,
              ThreadPool& pool) {
  MoeConfig cfg = select_moe_config(desc, pool.size());
  if (pt.rows > 0) cfg.rows_per_task = pt.rows;
  MoeDecodeOptions opt;
  opt.gemv = pt.tuning;
  opt.fused = pt.fused;
  auto moe = MoeDecode::create(desc, cfg, cpu, opt);
  if (!moe) {
    std::fprintf(stderr, "ktx-moe-bench: %s\n", moe.status().message().c_str());
    return 1;
  }
  std::printf("  %s %s %s | %s\n", cfg.to_string().c_str(), pt.tuning.to_string().c_str(),
              pt.fused ? "fused" : "phased", (*moe)->kernel_names().c_str());
  std::mt19937 rng(42);
  for (int64_t n_tokens : o.tokens) {
    std::vector<float> x(n_tokens * m.n_embd, 0.5f), out(x.size());
    std::vector<int32_t> ids(n_tokens * desc.top_k);
    std::vector<float> rw(ids.size(), 1.0f / desc.top_k);
    std::vector<double> times;
    double bytes_sum = 0.0, flops_sum = 0.0;
    // Warm-up: at least 2 calls and kWarmSeconds of calls. Two calls were not enough on the
    // lent host: the first point of a run read up to 4x slow (a 200 µs Qwen3 layer took 1 ms
    // per call for its first few dozen calls, whatever its config; cores waking up, likely).
    constexpr double kWarmSeconds = 0.2;
    int warm_calls = 0;
    double warm_sec = 0.0;
    while (static_cast<int>(times.size()) < o.iters) {
      std::vector<int32_t> all(desc.n_expert);
      for (int64_t e = 0; e < desc.n_expert; ++e) all[e] = static_cast<int32_t>(e);
      std::vector<char> used(desc.n_expert, 0);
      for (int64_t t = 0; t < n_tokens; ++t) {
        std::shuffle(all.begin(), all.end(), rng);
        for (int64_t j = 0; j < desc.top_k; ++j) {
          ids[t * desc.top_k + j] = all[j];
          used[all[j]] = 1;
        }
      }
      const int64_t n_used = std::count(used.begin(), used.end(), 1);
      const auto t0 = std::chrono::steady_clock::now();
      const Status st = (*moe)->run(w, x.data(), {n_tokens, ids.data(), rw.data()}, out.data(),
                                    pool);
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
                             .count();
      if (!st.is_ok()) {
        std::fprintf(stderr, "ktx-moe-bench: %s\n", st.message().c_str());
        return 1;
      }
      if (warm_calls < 2 || warm_sec < kWarmSeconds) {
        ++warm_calls;
        warm_sec += sec;
        continue;
      }
      times.push_back(sec);
      bytes_sum += static_cast<double>(n_used) * expert_bytes;
      flops_sum += 2.0 * 3.0 * m.n_embd * m.n_ff * n_tokens * desc.top_k;
    }
    const double total = [&] { double s = 0; for (double t : times) s += t; return s; }();
    std::sort(times.begin(), times.end());
    const double gbs = bytes_sum / total / 1e9;
    std::printf("  %6lld %8.1f %10.1f %10.1f %9.1f %7.0f%% %9.3f\n",
                static_cast<long long>(n_tokens), bytes_sum / times.size() / expert_bytes,
                times[times.size() / 2] * 1e6, bytes_sum / times.size() / 1e6, gbs,
                bw > 0 ? 100.0 * gbs / bw : 0.0, flops_sum / total / 1e12);
  }
  return 0;
}

int run_model(const ModelShape& m, const Options& o, const std::vector<Point>& points, double bw,
              const CpuIsa& cpu, ThreadPool& pool) {
  for (const std::string& types : o.types) {
    MoeDesc desc;
    desc.n_embd = m.n_embd;
    desc.n_ff = m.n_ff;
    desc.n_expert = o.experts > 0 ? std::min(o.experts, m.n_expert) : m.n_expert;
    desc.top_k = std::min(m.top_k, desc.n_expert);
    const GGMLType main_type = types == "bf16" ? GGMLType::BF16 : GGMLType::Q4_K;
    desc.gate_type = desc.up_type = main_type;
    desc.down_type = types == "q4_k_m" ? GGMLType::Q6_K : main_type;
    desc.max_tokens = *std::max_element(o.tokens.begin(), o.tokens.end());
    desc.isa = o.isa.empty() ? best_isa_tier(cpu) : parse_isa_tier(o.isa).value();
    const uint64_t gate_bytes = ggml_row_bytes(desc.gate_type, m.n_embd).value() * m.n_ff;
    const uint64_t down_bytes = ggml_row_bytes(desc.down_type, m.n_ff).value() * m.n_embd;
    const uint64_t expert_bytes = 2 * gate_bytes + down_bytes;
    std::printf("\n%s %s: %s\n  weights %.2f GB (%lld experts x %.1f MB)\n", m.name.c_str(),
                types.c_str(), desc.to_string().c_str(), expert_bytes * desc.n_expert / 1e9,
                static_cast<long long>(desc.n_expert), expert_bytes / 1e6);
    const int fill_threads = std::max(1, pool.size());
    auto gate = random_tensor(desc.gate_type, gate_bytes * desc.n_expert, 1, fill_threads);
    auto up = random_tensor(desc.up_type, gate_bytes * desc.n_expert, 2, fill_threads);
    auto down = random_tensor(desc.down_type, down_bytes * desc.n_expert, 3, fill_threads);
    const MoeWeights w{gate.data(), up.data(), down.data()};
    std::printf("  %6s %8s %10s %10s %9s %8s %9s\n", "tokens", "experts", "us/layer",
                "MB read", "GB/s", "of bw", "TFLOP/s");
    for (const Point& pt : points) {
      if (int rc = run_point(m, o, desc, pt, w, expert_bytes, bw, cpu, pool)) return rc;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"ktx-moe-bench: routed-expert decode layer (Q4_K / Q4_K_M / BF16) on this CPU"};
  app.add_option("--model", o.model, "deepseek-v3, qwen3-30b-a3b or all")->capture_default_str();
  app.add_option("--tokens", o.tokens, "tokens per call (decode batch)")->delimiter(',')
      ->capture_default_str();
  app.add_option("--threads", o.threads, "threads (0: all hardware threads)")
      ->capture_default_str();
  app.add_option("--experts", o.experts, "allocate only this many experts (0: the model's)")
      ->capture_default_str();
  app.add_option("--bw", o.bw, "memory read bandwidth in GB/s for the ratio (0: measure)")
      ->capture_default_str();
  app.add_option("--iters", o.iters, "timed iterations per point")->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--isa", o.isa, "cap the ISA tier: reference, avx2, avx512, amx");
  app.add_option("--types", o.types, "q4_k (all Q4_K), q4_k_m (Q6_K down) and/or bf16")
      ->delimiter(',')->capture_default_str();
  app.add_option("--rows-per-task", o.rows, "rows per task to sweep (0: select_moe_config)")
      ->delimiter(',')->capture_default_str();
  app.add_option("--prefetch", o.prefetch, "avx512 prefetch to sweep: none, default, t0:1536..")
      ->delimiter(',')->capture_default_str();
  app.add_option("--fused", o.fused, "1: one pool phase per layer, 0: five phases (sweepable)")
      ->delimiter(',')->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  for (const std::string& t : o.types) {
    if (t != "q4_k" && t != "q4_k_m" && t != "bf16") {
      std::fprintf(stderr, "ktx-moe-bench: --types '%s': expected q4_k, q4_k_m or bf16\n",
                   t.c_str());
      return 2;
    }
  }
  std::vector<Point> points;
  for (int64_t r : o.rows) {
    for (const std::string& p : o.prefetch) {
      auto tuning = parse_prefetch(p);
      if (!tuning) {
        std::fprintf(stderr, "ktx-moe-bench: %s\n", tuning.status().message().c_str());
        return 2;
      }
      for (int f : o.fused) points.push_back({std::max<int64_t>(r, 0), *tuning, f != 0});
    }
  }
  if (!o.isa.empty() && !parse_isa_tier(o.isa)) {
    std::fprintf(stderr, "ktx-moe-bench: %s\n", parse_isa_tier(o.isa).status().message().c_str());
    return 2;
  }
  for (int64_t t : o.tokens) {
    if (t <= 0) {
      std::fprintf(stderr, "ktx-moe-bench: --tokens: %lld is not a positive count\n",
                   static_cast<long long>(t));
      return 2;
    }
  }
  const CpuIsa cpu = detect_cpu_isa();
  double bw = o.bw;
  if (bw <= 0.0) {
    auto hw = probe_host(0.5);
    if (!hw) {
      std::fprintf(stderr, "ktx-moe-bench: probing the host: %s\n", hw.status().message().c_str());
      return 1;
    }
    bw = hw->memory.read_bw_gbs;
  }
  ThreadPool pool(o.threads);
  std::printf("cpu: %s | isa: %s | threads %d | read bandwidth %.1f GB/s%s\n",
              cpu_brand_string().c_str(), fmt::format("{}", fmt::join(cpu.names(), " ")).c_str(),
              pool.size(), bw, o.bw > 0 ? " (--bw)" : " (measured)");
  bool any = false;
  for (const ModelShape& m : moe_presets()) {
    if (o.model != "all" && o.model != m.name) continue;
    any = true;
    if (int rc = run_model(m, o, points, bw, cpu, pool)) return rc;
  }
  if (!any) {
    std::fprintf(stderr, "ktx-moe-bench: --model '%s': expected deepseek-v3, qwen3-30b-a3b or "
                 "all\n", o.model.c_str());
    return 2;
  }
  return 0;
}
