// Lab tool, not built by CMake: runs the router and sampler kernels (kernels/router,
// kernels/sample) on the host through bench/cuda_emu/emu.h and compares them with the engine's
// route_token and Sampler, so their logic can be checked on a machine without a GPU (it is
// how they were checked before the first device run). Slow (a coroutine per CUDA thread).
// Build from the repository root after building ktx_engine in build/:
//   g++ -std=c++20 -O2 -DFMT_SHARED -I. -Ibench/cuda_emu bench/cuda_emu/router_sample_emu.cpp \
//     build/runtime/CMakeFiles/ktx_engine.dir/engine/{router,sampler}.cpp.o -lfmt -o emu
//   ./emu router | ./emu small [first case] | ./emu k1000 | ./emu big
#include "emu.h"
#include "runtime/cuda/kernels/router/kernel.cuh"
#include "runtime/cuda/kernels/sample/kernel.cuh"

#include <algorithm>
#include <random>
#include <string>
#include <limits>
#include "common/model/config.h"
#include "common/util/rng.h"
#include "runtime/engine/sampler.h"

namespace ktx { void route_token(const ModelConfig& c, const float* logits, const float* bias, int32_t* experts, float* weights, const int32_t* forced); }
using namespace ktx;

static int fails = 0;
#define CHECK(c, ...) do { if (!(c)) { if (fails++ < 30) { std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); std::fprintf(stderr, __VA_ARGS__); std::fprintf(stderr, "\n"); } } } while (0)

struct RouterCase { const char* name; int64_t n_expert, top_k; GatingFunc gating; bool after_topk, norm, bias; float scale; int64_t groups, groups_used; };
const RouterCase kRouterCases[] = {
    {"deepseek-v3", 256, 8, GatingFunc::Sigmoid, false, true, true, 2.5f, 8, 4},
    {"tiny-dsv3", 16, 4, GatingFunc::Sigmoid, false, true, true, 2.5f, 4, 2},
    {"kimi-k2", 384, 8, GatingFunc::Sigmoid, false, true, true, 2.827f, 1, 1},
    {"qwen3-moe", 128, 8, GatingFunc::Softmax, false, true, false, 1.0f, 1, 1},
    {"qwen2-moe-60", 60, 4, GatingFunc::Softmax, false, false, false, 1.0f, 1, 1},
    {"qwen2-moe-8", 8, 2, GatingFunc::Softmax, false, false, false, 1.0f, 1, 1},
    {"mixtral", 8, 2, GatingFunc::Softmax, true, false, false, 1.0f, 1, 1},
    {"deepseek-v2", 160, 6, GatingFunc::Softmax, false, false, false, 16.0f, 8, 3},
    {"softmax-bias-groups-top16", 64, 16, GatingFunc::Softmax, false, true, true, 1.0f, 16, 5},
};

std::vector<float> router_logits(int64_t n, int64_t groups, int kind, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.5f);
  std::vector<float> l(n);
  for (float& x : l) x = nd(rng);
  switch (kind) {
    case 1: for (float& x : l) x = std::round(x * 2.0f) / 2.0f; break;
    case 2: std::fill(l.begin(), l.end(), nd(rng)); break;
    case 3: for (size_t i = 1; i < l.size(); i += 2) l[i] = std::nextafter(l[i - 1], (i / 2) % 2 ? 1e30f : -1e30f); break;
    case 4: { std::uniform_real_distribution<float> ud(30.0f, 60.0f); for (float& x : l) x = ud(rng); break; }
    case 5: { const int64_t per = n / groups; for (int64_t e = per; e < n; ++e) l[e] = l[e % per]; break; }
    case 6: for (size_t i = 0; i < l.size(); i += 3) l[i] = 4.0f; break;
  }
  return l;
}

void test_router() {
  for (const RouterCase& rc : kRouterCases) {
    ModelConfig c;
    c.n_expert = rc.n_expert; c.n_expert_used = rc.top_k; c.gating = rc.gating; c.softmax_after_topk = rc.after_topk;
    c.expert_weights_norm = rc.norm; c.expert_weights_scale = rc.scale; c.exp_probs_bias = rc.bias;
    c.n_expert_groups = rc.groups; c.n_group_used = rc.groups_used;
    const int64_t E = rc.n_expert, K = rc.top_k, T = 70, ld = E + 3;
    std::mt19937 rng(E * 131 + K);
    std::vector<float> logits(T * ld, std::nanf(""));
    for (int64_t t = 0; t < T; ++t) { auto l = router_logits(E, rc.groups, t % 7, rng); std::copy(l.begin(), l.end(), logits.begin() + t * ld); }
    std::vector<float> bias;
    if (rc.bias) { std::normal_distribution<float> nd(0.0f, 0.05f); bias.resize(E); for (float& b : bias) b = nd(rng); for (int64_t e = 0; e < E; e += 5) bias[e] = 0.125f; }
    std::vector<int> ids(T * K, -7); std::vector<float> w(T * K, -7);
    const int score = rc.after_topk ? 2 : rc.gating == GatingFunc::Sigmoid ? 1 : 0;
    emu::launch(T, 1, KTX_ROUTER_THREADS, [&] {
      ktx_route(logits.data(), ld, rc.bias ? bias.data() : nullptr, (int)E, (int)K, score, (int)rc.groups, (int)rc.groups_used,
                rc.gating == GatingFunc::Sigmoid, rc.norm, rc.scale, ids.data(), w.data());
    });
    std::vector<int32_t> wi(K); std::vector<float> ww(K);
    int bad = 0;
    for (int64_t t = 0; t < T; ++t) {
      route_token(c, &logits[t * ld], rc.bias ? bias.data() : nullptr, wi.data(), ww.data(), nullptr);
      for (int64_t i = 0; i < K; ++i) {
        if (ids[t * K + i] != wi[i] || std::fabs(w[t * K + i] - ww[i]) > 1e-6 * std::fabs(ww[i]) + 1e-30) {
          ++bad;
          CHECK(false, "%s token %ld kind %ld slot %ld: got %d %g want %d %g", rc.name, t, t % 7, i, ids[t*K+i], w[t*K+i], wi[i], ww[i]);
        }
      }
    }
    std::printf("router %-28s %s\n", rc.name, bad ? "MISMATCH" : "ok");
  }
}

SamplerParams params(float temp, int top_k, float top_p, float min_p, float pen, int last_n) {
  SamplerParams p; p.temperature = temp; p.top_k = top_k; p.top_p = top_p; p.min_p = min_p; p.repeat_penalty = pen; p.repeat_last_n = last_n; return p;
}
struct SampleCase { const char* name; SamplerParams p; };
std::vector<SampleCase> sample_cases() {
  return {
      {"greedy", params(0.0f, 40, 0.95f, 0.05f, 1.0f, 64)},
      {"greedy-penalty", params(0.0f, 0, 1.0f, 0.0f, 1.5f, 64)},
      {"temperature-only", params(0.8f, 0, 1.0f, 0.0f, 1.0f, 64)},
      {"hot", params(2.0f, 0, 1.0f, 0.0f, 1.0f, 64)},
      {"top-k-40", params(1.0f, 40, 1.0f, 0.0f, 1.0f, 64)},
      {"top-k-1", params(1.0f, 1, 1.0f, 0.0f, 1.0f, 64)},
      {"top-k-above-vocab", params(0.7f, 1 << 20, 1.0f, 0.0f, 1.0f, 64)},
      {"top-p-0.9", params(1.0f, 0, 0.9f, 0.0f, 1.0f, 64)},
      {"top-p-0.5", params(0.6f, 0, 0.5f, 0.0f, 1.0f, 64)},
      {"min-p-0.05", params(1.0f, 0, 1.0f, 0.05f, 1.0f, 64)},
      {"default-chain", params(0.8f, 40, 0.95f, 0.05f, 1.0f, 64)},
      {"chain-penalty", params(0.9f, 100, 0.8f, 0.02f, 1.3f, 64)},
      {"penalty-no-window", params(0.9f, 0, 0.9f, 0.0f, 1.3f, 0)},
  };
}
std::vector<float> sample_logits(int64_t n, int kind, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> l(n);
  for (float& x : l) x = nd(rng);
  const float inf = std::numeric_limits<float>::infinity();
  switch (kind) {
    case 1: for (float& x : l) x = std::round(x); break;
    case 2: { const float top = *std::max_element(l.begin(), l.end()) + 1.0f; for (size_t i = 7; i < l.size(); i += l.size() / 5) l[i] = top; break; }
    case 3: for (size_t i = 0; i < l.size(); i += 3) l[i] = (i % 2) ? std::nanf("") : -inf; l[l.size() - 1] = 0.0f; l[l.size() / 2] = -0.0f; break;
    case 4: std::fill(l.begin(), l.end(), -inf); break;
  }
  return l;
}

int g_from = 0;
void test_sampler(int64_t n_vocab, int n_seeds, int threads) {
  int ci = -1;
  std::mt19937 rng(n_vocab);
  std::vector<float> work(n_vocab); std::vector<unsigned long long> wbuf(n_vocab);
  for (const SampleCase& sc : sample_cases()) {
    if (++ci < g_from) continue;
    int bad = 0, n = 0;
    for (int kind = 0; kind < 5; ++kind) {
      const auto logits = sample_logits(n_vocab, kind, rng);
      for (int s = 0; s < n_seeds; ++s) {
        const uint64_t seed = 1000003ull * s + n_vocab;
        std::uniform_int_distribution<int32_t> ud(0, std::min<int64_t>(n_vocab, 300) - 1);
        std::vector<int32_t> hist(80); for (auto& x : hist) x = ud(rng);
        SamplerParams p = sc.p; p.seed = seed;
        Sampler cpu(p);
        for (int32_t t : hist) cpu.accept(t);
        const int32_t want = cpu.sample(logits.data(), n_vocab);
        Xoshiro256 hr(seed);
        const double u = hr.next_unit();
        std::vector<int> recent(p.repeat_last_n, -1);
        for (int i = 0; i < p.repeat_last_n && i < (int)hist.size(); ++i) recent[i] = hist[hist.size() - 1 - i];
        int tok = -5;
        emu::launch(1, 1, threads, [&] {
          ktx_sample(logits.data(), n_vocab, recent.data(), p.repeat_penalty != 1.0f ? p.repeat_last_n : 0, p.temperature, p.top_k, p.top_p, p.min_p,
                     p.repeat_penalty, &u, nullptr, work.data(), wbuf.data(), &tok);
        });
        ++n;
        if (tok != want) { ++bad; CHECK(false, "%s vocab %ld kind %d seed %d: got %d want %d (u %.17g)", sc.name, n_vocab, kind, s, tok, want, u); }
        // device generator
        unsigned long long st[4]; uint64_t sd = seed; for (auto& x : st) x = splitmix64(sd);
        tok = -5;
        emu::launch(1, 1, threads, [&] {
          ktx_sample(logits.data(), n_vocab, recent.data(), p.repeat_penalty != 1.0f ? p.repeat_last_n : 0, p.temperature, p.top_k, p.top_p, p.min_p,
                     p.repeat_penalty, nullptr, st, work.data(), wbuf.data(), &tok);
        });
        if (tok != want) { ++bad; CHECK(false, "devrng %s vocab %ld kind %d seed %d: got %d want %d", sc.name, n_vocab, kind, s, tok, want); }
      }
    }
    std::printf("sampler vocab %6ld %-20s %d/%d %s\n", n_vocab, sc.name, n - bad, n, bad ? "MISMATCH" : "ok");
  }
}

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IONBF, 0);
  const std::string mode = argc > 1 ? argv[1] : "all";
  g_from = argc > 2 ? std::atoi(argv[2]) : 0;
  if (mode == "all" || mode == "router") test_router();
  if (mode == "all" || mode == "small") test_sampler(400, 20, KTX_SAMPLE_THREADS);
  if (mode == "all" || mode == "small") test_sampler(1000, 10, KTX_SAMPLE_THREADS);
  if (mode == "k1000") test_sampler(1000, 10, KTX_SAMPLE_THREADS);
  if (mode == "big") test_sampler(151936, 1, KTX_SAMPLE_THREADS);
  std::printf("barriers %ld, failures %d\n", emu::barriers, fails);
  return fails != 0;
}
