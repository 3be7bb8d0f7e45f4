// ktx-attention-bench: the attention kernels (runtime/cpu/attention.h) at the shapes of the
// shipped models, on this CPU: DeepSeek-V3 absorbed MLA (128 heads, kv_lora 512, rope 64) and
// Qwen3-30B-A3B GQA (32 query heads, 4 KV heads, head dim 128). For decode (one token after a
// context of --ctx positions) and prefill (--prefill tokens from an empty cache) it prints the
// time per layer call, the cache bytes read (each position once) as GB/s, and GFLOP/s of the
// score and value products (causal: prefill token t reads t + 1 positions). Per kernel tier the
// CPU has, and with --ref the plain twin once per point (slow: scalar).
//
//   ktx-attention-bench --threads 16 --kv bf16,f16 --ctx 512,4096,16384 --prefill 512
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "common/hw/cpu_features.h"
#include "common/util/rng.h"
#include "runtime/cpu/attention.h"
#include "runtime/cpu/attention_flash.h"

namespace {

using namespace ktx;
using namespace ktx::cpu;

struct Options {
  int threads = 0;
  int iters = 5;
  std::vector<std::string> kv = {"bf16"};
  std::vector<int64_t> ctx = {512, 4096, 16384};
  int64_t prefill = 512;
  bool ref = false;
};

// rows cache rows of cols random elements.
std::vector<uint8_t> random_cache(KvType t, int64_t rows, int64_t cols, uint64_t seed) {
  Xoshiro256 rng(seed);
  std::vector<float> f(static_cast<size_t>(cols));
  const size_t rb = kv_row_bytes(t, cols);
  std::vector<uint8_t> c(static_cast<size_t>(rows) * rb);
  for (int64_t r = 0; r < rows; ++r) {
    for (float& x : f) x = static_cast<float>(2.0 * rng.next_unit() - 1.0);
    kv_store_row(t, f.data(), c.data() + r * rb, cols);
  }
  return c;
}

std::vector<float> random_f32(int64_t n, uint64_t seed) {
  Xoshiro256 rng(seed);
  std::vector<float> f(static_cast<size_t>(n));
  for (float& x : f) x = static_cast<float>(2.0 * rng.next_unit() - 1.0);
  return f;
}

// Median seconds of `iters` calls after one warm-up call; iters 0: the one cold call.
template <class F>
double time_it(int iters, F&& f) {
  std::vector<double> t;
  if (iters > 0) f();
  for (int i = 0; i < std::max(iters, 1); ++i) {
    const auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Score-and-value flops of one call: sum over tokens of keys read x per-key flops.
double call_flops(int64_t n_past, int64_t n_tok, double per_key) {
  double keys = 0;
  for (int64_t t = 0; t < n_tok; ++t) keys += static_cast<double>(n_past + t + 1);
  return keys * per_key;
}

void report(const char* model, const char* tier, KvType kv, const char* phase, int64_t n_past,
            int64_t n_tok, double sec, double bytes, double flops) {
  std::printf("%-14s %-7s %-5s %-8s ctx %6lld tok %4lld  %9.3f ms  %7.2f GB/s  %8.1f GFLOP/s\n",
              model, tier, kv_type_name(kv), phase, static_cast<long long>(n_past + n_tok),
              static_cast<long long>(n_tok), sec * 1e3, bytes / sec * 1e-9, flops / sec * 1e-9);
}

void bench_gqa(ThreadPool& pool, const Options& o, KvType kv, int64_t n_past, int64_t n_tok) {
  const GqaAttnDesc d{32, 4, 128, 128, 0.08838835f, kv};
  const int64_t n_pos = n_past + n_tok, row = d.n_head_kv * d.head_dim_k;
  const auto k = random_cache(kv, n_pos, row, 1), v = random_cache(kv, n_pos, row, 2);
  const auto q = random_f32(n_tok * d.n_head * d.head_dim_k, 3);
  std::vector<float> out(n_tok * d.n_head * d.head_dim_v);
  const double bytes = 2.0 * n_pos * kv_row_bytes(kv, row);
  const double flops = call_flops(n_past, n_tok, 2.0 * d.n_head * (d.head_dim_k + d.head_dim_v));
  const char* phase = n_tok == 1 ? "decode" : "prefill";
  const CpuIsa isa = detect_cpu_isa();
  for (IsaTier t : {IsaTier::avx512, IsaTier::avx2}) {
    const attn::Kernels* kern = attn::kernels_for(t, isa);
    if (!kern) continue;
    const double s = time_it(o.iters, [&] {
      attn::gqa_attention_with(*kern, pool, d, q.data(), d.n_head * d.head_dim_k, k.data(),
                               v.data(), n_past, n_tok, out.data());
    });
    report("qwen3-30b-a3b", kern->name, kv, phase, n_past, n_tok, s, bytes, flops);
  }
  if (o.ref) {
    const double s = time_it(0, [&] {
      gqa_attention_ref(d, q.data(), d.n_head * d.head_dim_k, k.data(), v.data(), n_past, n_tok,
                        out.data());
    });
    report("qwen3-30b-a3b", "ref", kv, phase, n_past, n_tok, s, bytes, flops);
  }
}

void bench_mla(ThreadPool& pool, const Options& o, KvType kv, int64_t n_past, int64_t n_tok) {
  const MlaAttnDesc d{128, 512, 64, 0.0721688f, kv};  // 1/sqrt(128 + 64)
  const int64_t n_pos = n_past + n_tok;
  const auto c = random_cache(kv, n_pos, d.kv_lora, 1), kpe = random_cache(kv, n_pos, d.rope, 2);
  const auto q_abs = random_f32(n_tok * d.n_head * d.kv_lora, 3);
  const auto q_pe = random_f32(n_tok * d.n_head * d.rope, 4);
  std::vector<float> out(n_tok * d.n_head * d.kv_lora);
  const double bytes =
      static_cast<double>(n_pos) * (kv_row_bytes(kv, d.kv_lora) + kv_row_bytes(kv, d.rope));
  const double flops = call_flops(n_past, n_tok, 2.0 * d.n_head * (2 * d.kv_lora + d.rope));
  const char* phase = n_tok == 1 ? "decode" : "prefill";
  const CpuIsa isa = detect_cpu_isa();
  for (IsaTier t : {IsaTier::avx512, IsaTier::avx2}) {
    const attn::Kernels* kern = attn::kernels_for(t, isa);
    if (!kern) continue;
    const double s = time_it(o.iters, [&] {
      attn::mla_attention_with(*kern, pool, d, q_abs.data(), q_pe.data(), d.n_head * d.rope,
                               d.rope, c.data(), kpe.data(), n_past, n_tok, out.data());
    });
    report("deepseek-v3", kern->name, kv, phase, n_past, n_tok, s, bytes, flops);
  }
  if (o.ref) {
    const double s = time_it(0, [&] {
      mla_attention_ref(d, q_abs.data(), q_pe.data(), d.n_head * d.rope, d.rope, c.data(),
                        kpe.data(), n_past, n_tok, out.data());
    });
    report("deepseek-v3", "ref", kv, phase, n_past, n_tok, s, bytes, flops);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"ktx-attention-bench: GQA and MLA attention kernels on this CPU"};
  app.add_option("--threads", o.threads, "threads (0: one per physical core)");
  app.add_option("--iters", o.iters, "timed calls per point (median printed)");
  app.add_option("--kv", o.kv, "KV cache types: f32, f16, bf16, q8_0")->delimiter(',');
  app.add_option("--ctx", o.ctx, "decode context lengths")->delimiter(',');
  app.add_option("--prefill", o.prefill, "prefill tokens from an empty cache (0: none)");
  app.add_flag("--ref", o.ref, "also time the plain twin (scalar, slow)");
  CLI11_PARSE(app, argc, argv);

  ThreadPool pool(o.threads);
  std::printf("%d threads\n", pool.size());
  for (const std::string& name : o.kv) {
    const Expected<KvType> kv = parse_kv_type(name);
    if (!kv) {
      std::fprintf(stderr, "ktx-attention-bench: %s\n", kv.status().message().c_str());
      return 1;
    }
    for (int64_t ctx : o.ctx) {
      bench_mla(pool, o, *kv, ctx - 1, 1);
      bench_gqa(pool, o, *kv, ctx - 1, 1);
    }
    if (o.prefill > 0) {
      bench_mla(pool, o, *kv, 0, o.prefill);
      bench_gqa(pool, o, *kv, 0, o.prefill);
    }
  }
  return 0;
}
