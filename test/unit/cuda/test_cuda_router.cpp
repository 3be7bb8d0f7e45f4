// The GPU router, shared-expert gate and sampler (runtime/cuda/router.h) against the CPU code
// they reproduce: route_token (runtime/engine/router.cpp) and Sampler (sampler.cpp), linked
// from the engine. Host-side checks (descriptors, argument errors, the entry points in the
// NVRTC cubin) run everywhere; the kernels run only on a machine with a GPU and skip without
// one, saying so.
//
// Bounds: expert ids and sampled tokens must be identical (the kernels make the CPU's
// decisions; crafted exact ties and float near-ties included). Router weights: 1e-6 relative
// (both sides compute in double and round to float; CUDA's and glibc's exp may differ in the
// last bit). The gate: 1e-5 relative against a double reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "common/cuda/nvrtc.h"
#include "common/util/rng.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/library.h"
#include "runtime/cuda/router.h"
#include "runtime/engine/engine_internal.h"
#include "runtime/engine/sampler.h"
#include "test/unit/cuda/gpu_test_util.h"

namespace ktx::cuda {
namespace {

using gpu_test::open_gpu;

// ---------------------------------------------------------------------------------------------
// Harness.


template <typename T>
DeviceBuffer upload(const std::vector<T>& v) {
  auto b = DeviceBuffer::alloc(std::max<size_t>(1, v.size() * sizeof(T)));
  EXPECT_TRUE(b) << b.status().message();
  if (!v.empty()) {
    EXPECT_TRUE(b->upload(v.data(), v.size() * sizeof(T)));
  }
  return std::move(*b);
}

template <typename T>
std::vector<T> download(const DeviceBuffer& b, size_t n) {
  std::vector<T> v(n);
  EXPECT_TRUE(b.download(v.data(), n * sizeof(T)));
  return v;
}

// ---------------------------------------------------------------------------------------------
// Router configurations.

struct RouterCase {
  const char* name;
  int64_t n_expert, top_k;
  GatingFunc gating;
  bool after_topk, norm, bias;
  float scale;
  int64_t groups, groups_used;
};

constexpr RouterCase kRouterCases[] = {
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

ModelConfig router_config(const RouterCase& rc) {
  ModelConfig c;
  c.n_expert = rc.n_expert;
  c.n_expert_used = rc.top_k;
  c.gating = rc.gating;
  c.softmax_after_topk = rc.after_topk;
  c.expert_weights_norm = rc.norm;
  c.expert_weights_scale = rc.scale;
  c.exp_probs_bias = rc.bias;
  c.n_expert_groups = rc.groups;
  c.n_group_used = rc.groups_used;
  return c;
}

// Token t's logits, one of several kinds: random, exact ties from coarse quantization, all
// equal, adjacent-float near-ties, saturating magnitudes, identical groups, a tied top third.
std::vector<float> router_logits(int64_t n, int64_t groups, int kind, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.5f);
  std::vector<float> l(static_cast<size_t>(n));
  for (float& x : l) x = nd(rng);
  switch (kind) {
    case 1:  // many exact ties
      for (float& x : l) x = std::round(x * 2.0f) / 2.0f;
      break;
    case 2:  // all equal
      std::fill(l.begin(), l.end(), nd(rng));
      break;
    case 3:  // neighbours one float apart
      for (size_t i = 1; i < l.size(); i += 2)
        l[i] = std::nextafter(l[i - 1], (i / 2) % 2 ? 1e30f : -1e30f);
      break;
    case 4: {  // sigmoid saturates to exactly 1.0 in double above ~37
      std::uniform_real_distribution<float> ud(30.0f, 60.0f);
      for (float& x : l) x = ud(rng);
      break;
    }
    case 5: {  // every group a copy of the first: group scores tie
      const int64_t per = n / groups;
      for (int64_t e = per; e < n; ++e) l[static_cast<size_t>(e)] = l[static_cast<size_t>(e % per)];
      break;
    }
    case 6:  // a third of the experts tied at the top
      for (size_t i = 0; i < l.size(); i += 3) l[i] = 4.0f;
      break;
    default:
      break;
  }
  return l;
}

TEST(CudaRouter, CubinHoldsRouterAndSamplerEntryPoints) {
  for (const char* arch : {"sm_80", "sm_89", "sm_90a"}) {
    auto cubin = compile_kernels(arch);
    ASSERT_TRUE(cubin) << cubin.status().message();
    const std::string bytes(cubin->begin(), cubin->end());
    for (const char* name : {"ktx_route", "ktx_shexp_gate", "ktx_sample", "ktx_sample_accept"})
      EXPECT_NE(bytes.find(name), std::string::npos) << arch << " lacks " << name;
  }
}

TEST(CudaRouter, DescFromConfigAndChecks) {
  const RouterDesc v3 = RouterDesc::from(router_config(kRouterCases[0]));
  EXPECT_EQ(v3.score, RouterScore::Sigmoid);
  EXPECT_TRUE(v3.group_top2);
  EXPECT_EQ(v3.n_groups, 8);
  EXPECT_EQ(v3.n_groups_used, 4);
  EXPECT_TRUE(v3.norm);
  EXPECT_EQ(v3.scale, 2.5f);
  EXPECT_TRUE(v3.validate());
  const RouterDesc mx = RouterDesc::from(router_config(kRouterCases[6]));
  EXPECT_EQ(mx.score, RouterScore::Logits);
  EXPECT_FALSE(mx.group_top2);
  const RouterDesc q3 = RouterDesc::from(router_config(kRouterCases[3]));
  EXPECT_EQ(q3.score, RouterScore::Softmax);

  RouterDesc bad = v3;
  bad.n_expert = 600;
  EXPECT_NE(bad.validate().message().find("600 experts"), std::string::npos);
  bad = v3;
  bad.top_k = 17;
  EXPECT_NE(bad.validate().message().find("top_k 17"), std::string::npos);
  bad = v3;
  bad.n_groups = 7;
  EXPECT_NE(bad.validate().message().find("7 expert groups"), std::string::npos);
  bad = v3;
  bad.n_groups_used = 9;
  EXPECT_NE(bad.validate().message().find("9 groups used"), std::string::npos);

  // Launchers check before launching: these need no device.
  RouterKernels rk;
  const Status st = rk.route(bad, nullptr, 256, nullptr, 1, nullptr, nullptr);
  EXPECT_FALSE(st);
  EXPECT_FALSE(rk.route(v3, nullptr, 100, nullptr, 1, nullptr, nullptr));  // ld < n_expert
  SamplerParams p;
  EXPECT_NE(rk.sample(p, nullptr, 0, nullptr, 0, nullptr, nullptr, nullptr, nullptr, nullptr)
                .message().find("vocabulary of 0"), std::string::npos);
  EXPECT_NE(rk.sample(p, nullptr, 300000, nullptr, 0, nullptr, nullptr, nullptr, nullptr, nullptr)
                .message().find("300000"), std::string::npos);
  EXPECT_NE(rk.sample(p, nullptr, 100, nullptr, 0, nullptr, nullptr, nullptr, nullptr, nullptr)
                .message().find("needs a draw"), std::string::npos);
  p.top_p = 0.0f;
  EXPECT_NE(rk.sample(p, nullptr, 100, nullptr, 0, nullptr, nullptr, nullptr, nullptr, nullptr)
                .message().find("top_p"), std::string::npos);
  EXPECT_FALSE(rk.shexp_gate(nullptr, nullptr, 10, 20, 1));  // rows overlap
}

TEST(CudaRouter, RouteMatchesRouteTokenOverConfigsAndTies) {
  KTX_NEED_GPU(g);
  for (const RouterCase& rc : kRouterCases) {
    SCOPED_TRACE(rc.name);
    const ModelConfig c = router_config(rc);
    const int64_t E = rc.n_expert, K = rc.top_k, T = 259, ld = E + 3;
    std::mt19937 rng(static_cast<uint32_t>(E * 131 + K));
    std::vector<float> logits(static_cast<size_t>(T * ld), std::nanf(""));  // padding poisoned
    for (int64_t t = 0; t < T; ++t) {
      const auto l = router_logits(E, rc.groups, static_cast<int>(t % 7), rng);
      std::copy(l.begin(), l.end(), logits.begin() + t * ld);
    }
    std::vector<float> bias;
    if (rc.bias) {
      std::normal_distribution<float> nd(0.0f, 0.05f);
      bias.resize(static_cast<size_t>(E));
      for (float& b : bias) b = nd(rng);
      for (int64_t e = 0; e < E; e += 5) bias[static_cast<size_t>(e)] = 0.125f;  // ties in choice
    }
    auto dl = upload(logits);
    auto db = upload(bias);
    auto dids = upload(std::vector<int32_t>(static_cast<size_t>(T * K), -7));
    auto dw = upload(std::vector<float>(static_cast<size_t>(T * K), -7.0f));
    ASSERT_TRUE(g->rk.route(RouterDesc::from(c), dl.as<float>(), ld,
                            rc.bias ? db.as<float>() : nullptr, T, dids.as<int32_t>(), dw.as<float>()));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const auto ids = download<int32_t>(dids, static_cast<size_t>(T * K));
    const auto w = download<float>(dw, static_cast<size_t>(T * K));
    std::vector<int32_t> want_ids(static_cast<size_t>(K));
    std::vector<float> want_w(static_cast<size_t>(K));
    for (int64_t t = 0; t < T; ++t) {
      route_token(c, &logits[t * ld], rc.bias ? bias.data() : nullptr, want_ids.data(),
                  want_w.data(), nullptr);
      for (int64_t i = 0; i < K; ++i) {
        ASSERT_EQ(ids[t * K + i], want_ids[i]) << "token " << t << " (kind " << t % 7 << ") slot " << i;
        ASSERT_NEAR(w[t * K + i], want_w[i], 1e-6 * std::fabs(want_w[i]) + 1e-30)
            << "token " << t << " slot " << i;
      }
    }
  }
}

// A TensorLookup over tensors uploaded by the test.
struct FakeWeights {
  std::map<std::string, std::pair<DeviceBuffer, DevTensor>> t;
  void add_f32(const std::string& name, const std::vector<float>& v, int64_t row_len) {
    DeviceBuffer b = upload(v);
    DevTensor d{b.get(), GGMLType::F32, row_len, static_cast<int64_t>(v.size()) / row_len,
                row_len * 4};
    t[name] = {std::move(b), d};
  }
  TensorLookup lookup() {
    return [this](const std::string& name) -> Expected<DevTensor> {
      auto it = t.find(name);
      if (it == t.end()) return Error("test: no tensor '{}'", name);
      return it->second.second;
    };
  }
};

TEST(CudaRouter, RouterLayerRunsGateGemvsAndBias) {
  KTX_NEED_GPU(g);
  ModelConfig c = router_config(kRouterCases[1]);  // tiny dsv3 routing
  c.n_expert = 64;
  c.n_embd = 256;
  const int64_t E = c.n_expert, D = c.n_embd, K = c.n_expert_used, T = 19;  // 3 GEMV calls
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(E * D)), h(static_cast<size_t>(T * D)), bias(static_cast<size_t>(E));
  for (float& x : w) x = nd(rng) * 0.1f;
  for (float& x : h) x = nd(rng);
  for (float& x : bias) x = nd(rng) * 0.05f;
  FakeWeights fw;
  fw.add_f32("blk.3.ffn_gate_inp.weight", w, D);
  fw.add_f32("blk.3.exp_probs_b.bias", bias, E);
  auto ws = RouterWorkspace::create(c, 32);
  ASSERT_TRUE(ws) << ws.status().message();
  EXPECT_EQ(RouterWorkspace::bytes(c, 32), static_cast<size_t>(32 * 64 + 32) * 4);
  auto dh = upload(h);
  auto dids = upload(std::vector<int32_t>(static_cast<size_t>(T * K), -1));
  auto dwt = upload(std::vector<float>(static_cast<size_t>(T * K), 0.0f));
  ASSERT_TRUE(router_layer(g->k, g->rk, c, 3, fw.lookup(), dh.as<float>(), T, dids.as<int32_t>(),
                           dwt.as<float>(), *ws, nullptr));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto logits = download<float>(ws->logits, static_cast<size_t>(T * E));
  const auto ids = download<int32_t>(dids, static_cast<size_t>(T * K));
  const auto wts = download<float>(dwt, static_cast<size_t>(T * K));
  std::vector<int32_t> want_ids(static_cast<size_t>(K));
  std::vector<float> want_w(static_cast<size_t>(K));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t e = 0; e < E; ++e) {
      double s = 0, sa = 0;
      for (int64_t i = 0; i < D; ++i) {
        s += double(w[e * D + i]) * h[t * D + i];
        sa += std::fabs(double(w[e * D + i]) * h[t * D + i]);
      }
      ASSERT_NEAR(logits[t * E + e], s, 1e-5 * sa + 1e-6) << "token " << t << " expert " << e;
    }
    // Decisions against the CPU router on the GPU's logits (their float sums differ).
    route_token(c, &logits[t * E], bias.data(), want_ids.data(), want_w.data(), nullptr);
    for (int64_t i = 0; i < K; ++i) {
      ASSERT_EQ(ids[t * K + i], want_ids[i]) << "token " << t << " slot " << i;
      ASSERT_NEAR(wts[t * K + i], want_w[i], 1e-6 * std::fabs(want_w[i])) << "token " << t;
    }
  }
  // Errors name what is wrong.
  Status st = router_layer(g->k, g->rk, c, 4, fw.lookup(), dh.as<float>(), T, dids.as<int32_t>(),
                           dwt.as<float>(), *ws, nullptr);
  EXPECT_NE(st.message().find("blk.4.ffn_gate_inp.weight"), std::string::npos) << st.message();
  st = router_layer(g->k, g->rk, c, 3, fw.lookup(), dh.as<float>(), 33, dids.as<int32_t>(),
                    dwt.as<float>(), *ws, nullptr);
  EXPECT_NE(st.message().find("33 tokens"), std::string::npos) << st.message();
  ModelConfig wide = c;
  wide.n_embd = 512;
  auto ws2 = RouterWorkspace::create(wide, 32);
  ASSERT_TRUE(ws2);
  st = router_layer(g->k, g->rk, wide, 3, fw.lookup(), dh.as<float>(), 1, dids.as<int32_t>(),
                    dwt.as<float>(), *ws2, nullptr);
  EXPECT_NE(st.message().find("expected [512, 64]"), std::string::npos) << st.message();
}

TEST(CudaRouter, ShexpGateMatchesFloat) {
  KTX_NEED_GPU(g);
  ModelConfig c;
  c.n_embd = 2080;
  c.shexp_gate = true;
  const int64_t D = c.n_embd, T = 11;
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> gw(static_cast<size_t>(D)), h(static_cast<size_t>(T * D)), out(static_cast<size_t>(T * D));
  for (float& x : gw) x = nd(rng) * 0.05f;
  for (float& x : h) x = nd(rng);
  for (float& x : out) x = nd(rng);
  FakeWeights fw;
  fw.add_f32("blk.0.ffn_gate_inp_shexp.weight", gw, D);
  auto ws = RouterWorkspace::create(c, 16);
  ASSERT_TRUE(ws);
  auto dh = upload(h);
  auto dout = upload(out);
  ASSERT_TRUE(shexp_gate(g->k, g->rk, c, 0, fw.lookup(), dh.as<float>(), T, dout.as<float>(), *ws, nullptr));
  const auto got = download<float>(dout, out.size());
  for (int64_t t = 0; t < T; ++t) {
    double dot = 0;
    for (int64_t i = 0; i < D; ++i) dot += double(gw[i]) * h[t * D + i];
    const double gate = 1.0 / (1.0 + std::exp(-dot));
    for (int64_t i = 0; i < D; ++i) {
      const double want = out[t * D + i] * gate;
      ASSERT_NEAR(got[t * D + i], want, 1e-5 * std::fabs(want) + 1e-7) << "token " << t << " " << i;
    }
  }
  c.shexp_gate = false;  // no gate: untouched
  auto dout2 = upload(out);
  ASSERT_TRUE(shexp_gate(g->k, g->rk, c, 0, fw.lookup(), dh.as<float>(), T, dout2.as<float>(), *ws, nullptr));
  EXPECT_EQ(download<float>(dout2, out.size()), out);
}

// ---------------------------------------------------------------------------------------------
// Sampler.

SamplerParams params(float temp, int top_k, float top_p, float min_p, float pen, int last_n) {
  SamplerParams p;
  p.temperature = temp;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.repeat_penalty = pen;
  p.repeat_last_n = last_n;
  return p;
}

struct SampleCase {
  const char* name;
  SamplerParams p;
};

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

// A logits row of one kind: random, coarse (exact ties everywhere), a tied maximum, NaN and
// -inf entries, everything -inf.
std::vector<float> sample_logits(int64_t n, int kind, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> l(static_cast<size_t>(n));
  for (float& x : l) x = nd(rng);
  const float inf = std::numeric_limits<float>::infinity();
  switch (kind) {
    case 1:
      for (float& x : l) x = std::round(x);
      break;
    case 2: {
      const float top = *std::max_element(l.begin(), l.end()) + 1.0f;
      for (size_t i = 7; i < l.size(); i += l.size() / 5) l[i] = top;
      break;
    }
    case 3:
      for (size_t i = 0; i < l.size(); i += 3) l[i] = (i % 2) ? std::nanf("") : -inf;
      l[l.size() - 1] = 0.0f;
      l[l.size() / 2] = -0.0f;
      break;
    case 4:
      std::fill(l.begin(), l.end(), -inf);
      break;
    default:
      break;
  }
  return l;
}

std::vector<int32_t> random_history(int64_t n_vocab, int n, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> ud(0, static_cast<int32_t>(std::min<int64_t>(n_vocab, 300)) - 1);
  std::vector<int32_t> h(static_cast<size_t>(n));
  for (int32_t& x : h) x = ud(rng);  // repeats on purpose: the penalty applies once
  return h;
}

TEST(CudaSampler, MatchesCpuSamplerOverParamsVocabsSeeds) {
  KTX_NEED_GPU(g);
  int64_t compared = 0;
  for (int64_t n_vocab : {400L, 1000L, 129280L, 151936L}) {
    const int n_seeds = n_vocab > 10000 ? 6 : 40;
    std::mt19937 rng(static_cast<uint32_t>(n_vocab));
    for (const SampleCase& sc : sample_cases()) {
      auto ws = SampleWorkspace::create(n_vocab, sc.p.repeat_last_n);
      ASSERT_TRUE(ws) << ws.status().message();
      auto dtok = upload(std::vector<int32_t>(1, -5));
      auto du = upload(std::vector<double>(1, 0.0));
      for (int kind = 0; kind < 5; ++kind) {
        const auto logits = sample_logits(n_vocab, kind, rng);
        auto dl = upload(logits);
        for (int s = 0; s < n_seeds; ++s) {
          SCOPED_TRACE(std::string(sc.name) + " vocab " + std::to_string(n_vocab) + " kind " +
                       std::to_string(kind) + " seed " + std::to_string(s));
          const uint64_t seed = 1000003ull * static_cast<uint64_t>(s) + static_cast<uint64_t>(n_vocab);
          const auto hist = random_history(n_vocab, 80, rng);
          SamplerParams p = sc.p;
          p.seed = seed;
          Sampler cpu(p);
          for (int32_t t : hist) cpu.accept(t);
          const int32_t want = cpu.sample(logits.data(), static_cast<int32_t>(n_vocab));
          // The draw the CPU made (its first), given by the host.
          Xoshiro256 host_rng(seed);
          const double u = host_rng.next_unit();
          ASSERT_TRUE(du.upload(&u, sizeof(u)));
          ASSERT_TRUE(ws->reset(seed, hist));
          ASSERT_TRUE(sample(g->rk, p, dl.as<float>(), *ws, du.as<double>(), dtok.as<int32_t>(), nullptr));
          int32_t got = -5;
          ASSERT_TRUE(dtok.download(&got, sizeof(got)));
          ASSERT_EQ(got, want) << "u " << u;
          // The same draw from the device generator.
          ASSERT_TRUE(sample(g->rk, p, dl.as<float>(), *ws, nullptr, dtok.as<int32_t>(), nullptr));
          ASSERT_TRUE(dtok.download(&got, sizeof(got)));
          ASSERT_EQ(got, want) << "device generator";
          ++compared;
        }
      }
    }
  }
  EXPECT_GT(compared, 1000);
}

// A generation loop with the history and the generator on the device (sample, then accept):
// the same tokens as Sampler with accept() after each, a fully -inf row (the CPU does not
// draw then) in the middle included.
TEST(CudaSampler, DeviceGeneratorAndHistoryFollowCpuOverSteps) {
  KTX_NEED_GPU(g);
  const int64_t n_vocab = 5000;
  for (const SampleCase& sc : sample_cases()) {
    SCOPED_TRACE(sc.name);
    SamplerParams p = sc.p;
    p.repeat_last_n = p.repeat_last_n > 0 ? 8 : 0;  // a short window, so the ring wraps
    p.seed = 77;
    std::mt19937 rng(3);
    const auto prompt = random_history(n_vocab, 11, rng);
    Sampler cpu(p);
    for (int32_t t : prompt) cpu.accept(t);
    auto ws = SampleWorkspace::create(n_vocab, p.repeat_last_n);
    ASSERT_TRUE(ws);
    ASSERT_TRUE(ws->reset(p.seed, prompt));
    auto dtok = upload(std::vector<int32_t>(1, -5));
    for (int step = 0; step < 40; ++step) {
      // Peaked rows over few tokens so the penalty matters.
      std::vector<float> logits = sample_logits(n_vocab, step == 17 ? 4 : 0, rng);
      if (step != 17)
        for (int i = 0; i < 12; ++i) logits[static_cast<size_t>(rng() % 300)] += 8.0f;
      const int32_t want = cpu.sample(logits.data(), static_cast<int32_t>(n_vocab));
      cpu.accept(want);
      auto dl = upload(logits);
      ASSERT_TRUE(sample(g->rk, p, dl.as<float>(), *ws, nullptr, dtok.as<int32_t>(), nullptr));
      ASSERT_TRUE(sample_accept(g->rk, *ws, dtok.as<int32_t>(), nullptr));
      int32_t got = -5;
      ASSERT_TRUE(dtok.download(&got, sizeof(got)));
      ASSERT_EQ(got, want) << "step " << step;
    }
  }
}

// The contract with the backend: the router layer and the sampler capture into one CUDA graph
// (no allocation, sync or host read inside) and write mapped pinned host memory; replaying
// the graph gives what the direct calls gave.
TEST(CudaSampler, RouterAndSamplerCaptureIntoAGraphWritingMappedMemory) {
  KTX_NEED_GPU(g);
  ModelConfig c = router_config(kRouterCases[0]);
  c.n_embd = 512;
  const int64_t E = c.n_expert, D = c.n_embd, K = c.n_expert_used, n_vocab = 129280;
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(E * D)), h(static_cast<size_t>(D)), bias(static_cast<size_t>(E));
  for (float& x : w) x = nd(rng) * 0.1f;
  for (float& x : h) x = nd(rng);
  for (float& x : bias) x = nd(rng) * 0.05f;
  FakeWeights fw;
  fw.add_f32("blk.0.ffn_gate_inp.weight", w, D);
  fw.add_f32("blk.0.exp_probs_b.bias", bias, E);
  auto ws = RouterWorkspace::create(c, 1);
  ASSERT_TRUE(ws);
  SamplerParams p = params(0.8f, 40, 0.95f, 0.05f, 1.1f, 64);
  auto sws = SampleWorkspace::create(n_vocab, p.repeat_last_n);
  ASSERT_TRUE(sws);
  ASSERT_TRUE(sws->reset(5, {1, 2, 3}));
  auto dh = upload(h);
  auto dl = upload(sample_logits(n_vocab, 0, rng));

  struct Mapped {
    int32_t ids[16];
    float weights[16];
    int32_t token;
    double u;
  };
  Mapped* host = nullptr;
  ASSERT_EQ(cudaHostAlloc(reinterpret_cast<void**>(&host), sizeof(Mapped), cudaHostAllocMapped), cudaSuccess);
  std::unique_ptr<Mapped, void (*)(Mapped*)> guard(host, [](Mapped* m) { cudaFreeHost(m); });
  Mapped* dev = nullptr;
  ASSERT_EQ(cudaHostGetDevicePointer(reinterpret_cast<void**>(&dev), host, 0), cudaSuccess);
  host->u = 0.3;

  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  auto step = [&]() -> Status {
    KTX_RETURN_IF_ERROR(router_layer(g->k, g->rk, c, 0, fw.lookup(), dh.as<float>(), 1, dev->ids,
                                     dev->weights, *ws, stream));
    return sample(g->rk, p, dl.as<float>(), *sws, &dev->u, &dev->token, stream);
  };
  ASSERT_TRUE(step());
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const Mapped direct = *host;
  std::memset(host->ids, 0xff, sizeof(host->ids));
  host->token = -9;

  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  const Status st = step();
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_TRUE(st) << st.message();
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  for (int64_t i = 0; i < K; ++i) {
    EXPECT_EQ(host->ids[i], direct.ids[i]) << i;
    EXPECT_EQ(host->weights[i], direct.weights[i]) << i;
  }
  EXPECT_EQ(host->token, direct.token);
  // And the CPU agrees with what the graph wrote.
  std::vector<float> logits = download<float>(ws->logits, static_cast<size_t>(E));
  std::vector<int32_t> want(static_cast<size_t>(K));
  std::vector<float> want_w(static_cast<size_t>(K));
  route_token(c, logits.data(), bias.data(), want.data(), want_w.data(), nullptr);
  for (int64_t i = 0; i < K; ++i) EXPECT_EQ(host->ids[i], want[i]) << i;
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace ktx::cuda
