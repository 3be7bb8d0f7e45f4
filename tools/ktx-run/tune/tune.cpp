// The tuner: see tune.h. Weights are a bank of a few distinct quantized random rows tiled over
// the tensor (quantizing gigabytes row by row would take minutes; the kernels' speed does not
// depend on the values, only on them being finite). Tensors are allocated uninitialized and
// first touched by the pool's workers, so on a NUMA host their pages spread over the nodes the
// way a parallel model load places them. Every call routes tokens to fresh random experts so
// weights come from DRAM, as in decode.
#include "tools/ktx-run/tune/tune.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <random>

#include "runtime/cpu/moe_decode.h"

namespace ktx::cpu {
namespace {

struct Tensor {
  std::unique_ptr<uint8_t[]> data;
  uint64_t bytes = 0;
};

// `rows` rows of `n` elements: 16 distinct quantized random rows repeated.
Expected<Tensor> random_tensor(GGMLType type, int64_t rows, int64_t n, uint64_t seed,
                               ThreadPool& pool) {
  KTX_ASSIGN_OR_RETURN(const uint64_t rb, ggml_row_bytes(type, n));
  constexpr int64_t kBank = 16;
  std::vector<uint8_t> bank(kBank * rb);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f / std::sqrt(float(n)));
  std::vector<float> row(static_cast<size_t>(n));
  for (int64_t r = 0; r < kBank; ++r) {
    for (auto& v : row) v = dist(rng);
    quantize_row(type, row.data(), bank.data() + r * rb, n);
  }
  Tensor t;
  t.bytes = rb * uint64_t(rows);
  t.data.reset(new uint8_t[t.bytes]);
  const int64_t chunk = 256;
  pool.parallel_for((rows + chunk - 1) / chunk, [&](int64_t c) {
    for (int64_t r = c * chunk; r < std::min(rows, (c + 1) * chunk); ++r) {
      std::copy_n(bank.data() + (r % kBank) * rb, rb, t.data.get() + r * rb);
    }
  });
  return t;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Per-call routing: every token picks top_k distinct experts among the allocated ones.
void random_routing(std::mt19937_64& rng, int64_t n_alloc, int64_t top_k, int64_t tokens,
                    std::vector<int32_t>* ids, int64_t* n_used) {
  std::vector<int32_t> all(static_cast<size_t>(n_alloc));
  std::vector<char> used(static_cast<size_t>(n_alloc), 0);
  for (int64_t e = 0; e < n_alloc; ++e) all[size_t(e)] = int32_t(e);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < top_k; ++j) {  // partial Fisher-Yates
      std::uniform_int_distribution<int64_t> pick(j, n_alloc - 1);
      std::swap(all[size_t(j)], all[size_t(pick(rng))]);
      (*ids)[size_t(t * top_k + j)] = all[size_t(j)];
      used[size_t(all[size_t(j)])] = 1;
    }
  }
  *n_used = std::count(used.begin(), used.end(), 1);
}

// Times one configured layer: fresh routing per call, two warm-up calls (pool wake-up, scratch
// growth), then calls until `slice` seconds are spent (at least 3).
struct Bench {
  const MoeDesc& desc;
  MoeWeights weights;
  int64_t n_alloc;
  uint64_t expert_bytes;
  int64_t tokens;
  std::mt19937_64 rng;

  Expected<TuneMeasurement> time(MoeDecode& moe, ThreadPool& pool, double slice) {
    std::vector<float> x(size_t(tokens * desc.n_embd), 0.5f), out(x.size());
    std::vector<int32_t> ids(size_t(tokens * desc.top_k));
    std::vector<float> rw(ids.size(), 1.0f / float(desc.top_k));
    std::vector<double> times;
    double bytes = 0.0, total = 0.0;
    for (int it = 0; it < 2 || (total < slice && it < 10000) || times.size() < 3; ++it) {
      int64_t n_used = 0;
      random_routing(rng, n_alloc, desc.top_k, tokens, &ids, &n_used);
      const auto t0 = std::chrono::steady_clock::now();
      KTX_RETURN_IF_ERROR(
          moe.run(weights, x.data(), {tokens, ids.data(), rw.data()}, out.data(), pool));
      const double sec =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (it < 2) continue;
      times.push_back(sec);
      total += sec;
      bytes += double(n_used) * double(expert_bytes);
    }
    return TuneMeasurement{moe.config(), moe.kernel_names(), median(times) * 1e6,
                           bytes / total / 1e9, int(times.size())};
  }
};

}  // namespace

const std::vector<MoeShape>& moe_presets() {
  static const std::vector<MoeShape> kPresets = {{"deepseek-v3", 7168, 2048, 256, 8},
                                                 {"qwen3-30b-a3b", 2048, 768, 128, 8}};
  return kPresets;
}

Expected<MoeShape> moe_preset(const std::string& name) {
  for (const auto& p : moe_presets()) {
    if (p.name == name) return p;
  }
  return Error("model preset '{}': expected deepseek-v3 or qwen3-30b-a3b (or a .gguf file)", name);
}

std::vector<MoeConfig> tune_candidates(const MoeDesc& desc, int max_threads) {
  max_threads = std::max(1, max_threads);
  std::vector<int> threads = {max_threads, std::max(1, max_threads * 3 / 4),
                              std::max(1, max_threads / 2)};
  threads.erase(std::unique(threads.begin(), threads.end()), threads.end());
  std::vector<int64_t> rows;
  for (int64_t r = 8; r <= 256 && r <= std::max(desc.n_ff, desc.n_embd); r *= 2) rows.push_back(r);
  rows.push_back(select_moe_config(desc, max_threads).rows_per_task);
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  std::vector<MoeConfig> out;
  for (int t : threads) {
    for (int64_t r : rows) {
      for (int u = 1; u <= 4; ++u) out.push_back(MoeConfig{r, u, t});
    }
  }
  return out;
}

Expected<TuneResult> tune_moe_decode(const MoeDesc& desc, const CpuIsa& cpu,
                                     const TuneOptions& o) {
  KTX_RETURN_IF_ERROR(desc.validate());
  const std::string name = desc.to_string();
  if (o.tokens < 1 || o.tokens > desc.max_tokens) {
    return Error("{}: tune tokens={} must be in [1, max_tokens={}]", name, o.tokens,
                 desc.max_tokens);
  }
  if (!isa_tier_supported(desc.isa, cpu)) {
    return Error("{}: this CPU lacks the descriptor's ISA tier '{}'", name,
                 isa_tier_name(desc.isa));
  }
  std::map<int, std::unique_ptr<ThreadPool>> pools;
  auto pool_for = [&](int n) -> ThreadPool& {
    auto& p = pools[n];
    if (!p) p = std::make_unique<ThreadPool>(n);
    return *p;
  };
  const int max_threads = o.max_threads > 0 ? o.max_threads : pool_for(0).size();
  // Bytes of one expert, then as many experts as the byte cap allows (at least top_k).
  KTX_ASSIGN_OR_RETURN(const uint64_t gate_rb, ggml_row_bytes(desc.gate_type, desc.n_embd));
  KTX_ASSIGN_OR_RETURN(const uint64_t up_rb, ggml_row_bytes(desc.up_type, desc.n_embd));
  KTX_ASSIGN_OR_RETURN(const uint64_t down_rb, ggml_row_bytes(desc.down_type, desc.n_ff));
  const uint64_t expert_bytes = (gate_rb + up_rb) * uint64_t(desc.n_ff) + down_rb * desc.n_embd;
  const int64_t n_alloc = std::clamp<int64_t>(int64_t(o.max_weight_bytes / expert_bytes),
                                              desc.top_k, desc.n_expert);
  ThreadPool& fill_pool = pool_for(max_threads);
  KTX_ASSIGN_OR_RETURN(Tensor gate, random_tensor(desc.gate_type, desc.n_ff * n_alloc,
                                                  desc.n_embd, o.seed, fill_pool));
  KTX_ASSIGN_OR_RETURN(Tensor up, random_tensor(desc.up_type, desc.n_ff * n_alloc, desc.n_embd,
                                                o.seed + 1, fill_pool));
  KTX_ASSIGN_OR_RETURN(Tensor down, random_tensor(desc.down_type, desc.n_embd * n_alloc,
                                                  desc.n_ff, o.seed + 2, fill_pool));
  const MoeWeights weights{gate.data.get(), up.data.get(), down.data.get()};

  // Generate every candidate first; those whose kernels ignore `unroll` collapse to one, so
  // the time budget is shared by the configurations that really differ.
  std::vector<std::pair<MoeConfig, std::unique_ptr<MoeDecode>>> todo;
  std::map<std::string, bool> seen;  // kernels | rows | threads
  for (const MoeConfig& cfg : tune_candidates(desc, max_threads)) {
    KTX_ASSIGN_OR_RETURN(auto moe, MoeDecode::create(desc, cfg, cpu));
    const std::string key =
        fmt::format("{}|{}|{}", moe->kernel_names(), cfg.rows_per_task, cfg.threads);
    if (!seen[key]) todo.emplace_back(cfg, std::move(moe));
    seen[key] = true;
  }
  const double slice = o.seconds / double(std::max<size_t>(1, todo.size()));
  Bench bench{desc, weights, n_alloc, expert_bytes, o.tokens, std::mt19937_64(o.seed)};
  TuneResult result{desc, {}, 0};
  for (auto& [cfg, moe] : todo) {
    KTX_ASSIGN_OR_RETURN(TuneMeasurement m, bench.time(*moe, pool_for(cfg.threads), slice));
    if (o.progress) {
      o.progress(fmt::format("  {}  {:9.1f} us  {:7.1f} GB/s  ({} calls)", cfg.to_string(), m.us,
                             m.gbs, m.iterations));
    }
    result.runs.push_back(std::move(m));
    if (result.runs.back().us < result.runs[result.best].us) result.best = result.runs.size() - 1;
  }
  return result;
}

void record_tuned(const TuneResult& result, HwProfile* hw) {
  hw->tuned[result.desc.to_string()] = result.winner().config.to_string();
}

std::string format_tune_table(const TuneResult& r) {
  std::string s = fmt::format("{}\n  kernels: {}\n  {:>1} {:>13} {:>6} {:>7} {:>10} {:>8}\n",
                              r.desc.to_string(), r.runs.empty() ? "" : r.runs[0].kernels, "",
                              "rows_per_task", "unroll", "threads", "us/call", "GB/s");
  for (size_t i = 0; i < r.runs.size(); ++i) {
    const auto& m = r.runs[i];
    s += fmt::format("  {:>1} {:>13} {:>6} {:>7} {:>10.1f} {:>8.1f}\n", i == r.best ? "*" : "",
                     m.config.rows_per_task, m.config.unroll, m.config.threads, m.us, m.gbs);
  }
  return s;
}

Status tune_profile(const std::string& hw_path, const std::vector<MoeDesc>& descs,
                    const CpuIsa& cpu, const TuneOptions& options,
                    const std::function<void(const TuneResult&)>& on_result) {
  KTX_ASSIGN_OR_RETURN(HwProfile hw, HwProfile::load(hw_path));
  for (const MoeDesc& desc : descs) {
    if (options.progress) options.progress("tuning " + desc.to_string());
    KTX_ASSIGN_OR_RETURN(TuneResult r, tune_moe_decode(desc, cpu, options));
    if (on_result) on_result(r);
    record_tuned(r, &hw);
  }
  return hw.save(hw_path);
}

}  // namespace ktx::cpu
