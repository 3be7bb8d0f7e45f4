// The CUDA backend end to end on the shipped tiny models: the op list ktc would emit with
// reference kernels, with every op kind the GPU backend runs moved to the GPU (the plan's
// placement, done here by hand), must give the logits the all-CPU program gives: a prefill of
// a whole sequence, then decode steps (replayed CUDA graphs) on top of it, and prefill ==
// decode. Both sides compute in float32 on the same dequantized values (the GPU's GEMVs read
// the GGUF blocks in place, here on float activations: gpu_float_gemv; their sums run in
// another order), so the bound is the float32 one
// of ../shared/models/README.md, relative L2 error per position <= 1e-4, loosened to kBound =
// 1e-3 because both sides round keys and values to an f16 cache: a value a hair from a
// rounding boundary may round the other way on one side (one f16 ulp, 5e-4 relative, in one
// element). Skipped without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "common/cuda/nvrtc.h"
#include "common/gguf/gguf.h"
#include "common/model/config.h"
#include "runtime/cuda/library.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/program.h"

namespace ktx {
namespace {

double rel_l2(const float* a, const float* b, int64_t n) {
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

struct Pair {
  std::shared_ptr<const GGUFFile> gguf;
  std::unique_ptr<Model> cpu, gpu;
};

// Every kind the plan's placement puts on the GPU (routed experts and the embedding stay).
bool gpu_kind(const std::string& kind) { return kind != "routed_experts" && kind != "embed"; }

// stream_min > 0: the GPU side's routed experts stream to the GPU from that many tokens per
// call (kt-stream's attributes), with calls of up to stream_chunk tokens.
std::unique_ptr<Pair> load_pair(const std::string& stem, const std::vector<uint8_t>& cubin,
                                const std::string& arch, int64_t stream_min = 0,
                                int64_t stream_chunk = 0) {
  auto p = std::make_unique<Pair>();
  auto f = GGUFFile::open(std::string(KTX_SHARED_DIR) + "/models/" + stem + ".gguf");
  EXPECT_TRUE(f) << f.status().message();
  if (!f) return nullptr;
  p->gguf = std::shared_ptr<const GGUFFile>(std::move(f).value());
  auto cfg = ModelConfig::from_gguf(*p->gguf);
  EXPECT_TRUE(cfg) << cfg.status().message();
  if (!cfg) return nullptr;
  ReferenceProgram ref = reference_program(*cfg);
  EngineOptions opt;
  opt.threads = 2;
  opt.program = ref.ops;
  opt.buffers = ref.buffers;
  // The CPU side keeps an f16 cache too (its fast attention kernels, float32 linears), so
  // both sides round the same keys and values.
  for (PlanOp& op : opt.program)
    if (op.kind == "attention") op.attrs["kernel"] = "gemv", op.attrs["kv_cache"] = "f16";
  auto cpu = Model::load(*cfg, p->gguf, opt);
  EXPECT_TRUE(cpu) << cpu.status().message();
  if (!cpu) return nullptr;
  p->cpu = std::move(cpu).value();
  int moved = 0;
  for (PlanOp& op : opt.program) {
    if (gpu_kind(op.kind)) op.device = "gpu", ++moved;
    if (op.kind == "routed_experts" && stream_min > 0) {
      op.attrs["stream"] = "gpu";
      op.attrs["stream_min_tokens"] = std::to_string(stream_min);
      op.attrs["stream_chunk"] = std::to_string(stream_chunk);
    }
  }
  EXPECT_GT(moved, 0);
  opt.gpu_code = cubin;
  opt.gpu_arch = arch;
  opt.gpu_float_gemv = true;  // the float32 comparison (the integer GEMVs: eval's KL bounds)
  auto gpu = Model::load(*cfg, p->gguf, opt);
  EXPECT_TRUE(gpu) << gpu.status().message();
  if (!gpu) return nullptr;
  p->gpu = std::move(gpu).value();
  return p;
}

// load_pair with the kernels compiled for GPU 0 (null after a failed expectation).
std::unique_ptr<Pair> load_gpu_pair(const std::string& stem, int64_t stream_min = 0,
                                    int64_t stream_chunk = 0) {
  auto arch = cuda::device_arch(0);
  EXPECT_TRUE(arch) << arch.status().message();
  if (!arch) return nullptr;
  auto cubin = cuda::compile_kernels(*arch);
  EXPECT_TRUE(cubin) << cubin.status().message();
  if (!cubin) return nullptr;
  return load_pair(stem, *cubin, *arch, stream_min, stream_chunk);
}

constexpr double kBound = 1e-3;

class CudaEngine : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaEngine, GpuProgramMatchesTheCpuProgram) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: the CUDA backend is not run";
  auto p = load_gpu_pair(GetParam());
  ASSERT_TRUE(p);
  const int64_t V = p->cpu->config().n_vocab;
  std::vector<int32_t> prompt;
  for (int i = 0; i < 37; ++i) prompt.push_back((i * 97 + 11) % static_cast<int>(V));

  Session sc(*p->cpu), sg(*p->gpu);
  auto lc = sc.forward(prompt, true);
  auto lg = sg.forward(prompt, true);
  ASSERT_TRUE(lc) << lc.status().message();
  ASSERT_TRUE(lg) << lg.status().message();
  ASSERT_EQ(lc->size(), lg->size());
  double worst = 0.0;
  for (size_t t = 0; t < prompt.size(); ++t) {
    const double e = rel_l2(lg->data() + t * V, lc->data() + t * V, V);
    worst = std::max(worst, e);
    EXPECT_LE(e, kBound) << "prefill position " << t;
  }

  // The same prompt asking for its last logits only, as a chat prefill does: copies of the
  // logits buffer before the lm_head carry activations (ktc reuses it: qwen2moe's embedding
  // output lands there) and take every row.
  {
    Session a(*p->cpu), b(*p->gpu);
    auto la = a.forward(prompt, false);
    auto lb = b.forward(prompt, false);
    ASSERT_TRUE(la && lb);
    ASSERT_EQ(la->size(), static_cast<size_t>(V));
    ASSERT_EQ(lb->size(), static_cast<size_t>(V));
    EXPECT_LE(rel_l2(lb->data(), la->data(), V), kBound) << "prefill with the last logits only";
  }

  // Decode: one token at a time (graph replays after the first capture).
  Session dg(*p->gpu);
  for (size_t t = 0; t < prompt.size(); ++t) {
    auto step = dg.forward(std::span<const int32_t>(&prompt[t], 1), false);
    ASSERT_TRUE(step) << step.status().message();
    const double e = rel_l2(step->data(), lc->data() + t * V, V);
    worst = std::max(worst, e);
    EXPECT_LE(e, kBound) << "decode position " << t;
  }
  // Every decode step replayed a graph (captured at the first), one launch each.
  const DeviceStats ds = dg.device_stats();
  EXPECT_EQ(ds.calls, static_cast<int64_t>(prompt.size()));
  EXPECT_EQ(ds.graph_launches, static_cast<int64_t>(prompt.size()));
  for (int i = 0; i < 8; ++i) {
    const int32_t tok = (i * 31 + 5) % static_cast<int32_t>(V);
    auto c = sc.forward(std::span<const int32_t>(&tok, 1), false);
    auto g = sg.forward(std::span<const int32_t>(&tok, 1), false);
    ASSERT_TRUE(c && g);
    const double e = rel_l2(g->data(), c->data(), V);
    worst = std::max(worst, e);
    EXPECT_LE(e, kBound) << "decode after prefill, step " << i;
  }
  std::printf("%s: worst relative L2 GPU vs CPU %.3e\n", GetParam().c_str(), worst);
}

// The two CPU-op hand-offs of graph replays (KTX_CUDA_HANDOFF=host: host functions; flags:
// mapped-memory flags driven by the calling thread; eager calls such as this prefill always use
// host functions) run the same ops on the same data: the same logits, and the flag sessions
// still launch one graph per decode step.
TEST_P(CudaEngine, FlagHandOffEqualsHostFunctions) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: the CUDA backend is not run";
  auto p = load_gpu_pair(GetParam());
  ASSERT_TRUE(p);
  const int64_t V = p->gpu->config().n_vocab;
  std::vector<int32_t> prompt;
  for (int i = 0; i < 13; ++i) prompt.push_back((i * 89 + 7) % static_cast<int>(V));
  auto run = [&](const char* mode, DeviceStats* stats) {
    setenv("KTX_CUDA_HANDOFF", mode, 1);
    Session s(*p->gpu);  // the mode is read when the session's GPU state is made
    std::vector<float> out;
    auto pre = s.forward(std::span<const int32_t>(prompt.data(), 9), true);
    EXPECT_TRUE(pre) << pre.status().message();
    if (pre) out = *pre;
    for (size_t t = 9; t < prompt.size(); ++t) {
      auto step = s.forward(std::span<const int32_t>(&prompt[t], 1), false);
      EXPECT_TRUE(step) << step.status().message();
      if (step) out.insert(out.end(), step->begin(), step->end());
    }
    *stats = s.device_stats();
    unsetenv("KTX_CUDA_HANDOFF");
    return out;
  };
  DeviceStats hs, fs;
  const std::vector<float> host = run("host", &hs), flags = run("flags", &fs);
  ASSERT_EQ(host.size(), static_cast<size_t>((9 + 4) * V));
  ASSERT_EQ(flags.size(), host.size());
  // Same kernels on the same inputs; only the CPU pool's task order may differ. Stale or
  // missing data (a hand-off that lets the GPU run ahead) moves positions by O(1).
  for (size_t t = 0; t < host.size() / static_cast<size_t>(V); ++t)
    EXPECT_LE(rel_l2(flags.data() + t * V, host.data() + t * V, V), 1e-5) << "position " << t;
  EXPECT_EQ(fs.graph_launches, hs.graph_launches);
  EXPECT_EQ(fs.graph_launches, 4);
}

// Routed experts streamed to the GPU (ProgramOp::stream_min_tokens): calls of 16 tokens and
// more copy each MoE layer's expert weights into a device slot and run the layer there (float
// GEMMs, as the CPU side's float32 reference), shorter calls and decode steps keep them on the
// CPU. The same logits as the all-CPU program in both; a prompt longer than 512 tokens that
// wants only its last logits runs as one call of up to stream_chunk tokens.
TEST_P(CudaEngine, StreamedExpertsMatchTheCpuProgram) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: the CUDA backend is not run";
  auto p = load_gpu_pair(GetParam(), 16, 640);
  ASSERT_TRUE(p);
  const ModelConfig& c = p->cpu->config();
  const int64_t V = c.n_vocab;
  int64_t moe_layers = 0;
  for (int64_t il = 0; il < c.n_layer; ++il) moe_layers += !c.layer_is_dense(il);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 600; ++i) prompt.push_back((i * 193 + 17) % static_cast<int>(V));
  // 37 tokens with every position's logits (one streamed call), then 5 decode steps.
  Session sc(*p->cpu), sg(*p->gpu);
  auto lc = sc.forward(std::span<const int32_t>(prompt.data(), 37), true);
  auto lg = sg.forward(std::span<const int32_t>(prompt.data(), 37), true);
  ASSERT_TRUE(lc) << lc.status().message();
  ASSERT_TRUE(lg) << lg.status().message();
  for (int64_t t = 0; t < 37; ++t)
    EXPECT_LE(rel_l2(lg->data() + t * V, lc->data() + t * V, V), kBound) << "streamed prefill position " << t;
  DeviceStats ds = sg.device_stats();
  EXPECT_EQ(ds.streamed_calls, 1);
  EXPECT_EQ(ds.streamed_layers, moe_layers);
  EXPECT_GT(ds.streamed_bytes, 0u);
  for (int i = 0; i < 5; ++i) {
    auto a = sc.forward(std::span<const int32_t>(&prompt[37 + i], 1), false);
    auto b = sg.forward(std::span<const int32_t>(&prompt[37 + i], 1), false);
    ASSERT_TRUE(a && b);
    EXPECT_LE(rel_l2(b->data(), a->data(), V), kBound) << "decode step " << i;
  }
  EXPECT_EQ(sg.device_stats().streamed_calls, 1) << "decode steps keep the experts on the CPU";
  // 600 tokens, last logits only: one call (stream_chunk 640), not two of 512 and 88.
  Session sc2(*p->cpu, 1024), sg2(*p->gpu, 1024);
  auto a = sc2.forward(prompt, false);
  auto b = sg2.forward(prompt, false);
  ASSERT_TRUE(a) << a.status().message();
  ASSERT_TRUE(b) << b.status().message();
  EXPECT_LE(rel_l2(b->data(), a->data(), V), kBound) << "600-token streamed prefill";
  ds = sg2.device_stats();
  EXPECT_EQ(ds.calls, 1);
  EXPECT_EQ(ds.streamed_calls, 1);
}

INSTANTIATE_TEST_SUITE_P(SharedModels, CudaEngine,
                         ::testing::Values("dsv3.Q4_K_M", "dsv3.Q8_0", "qwen3moe.Q4_K_M",
                                           "qwen2moe.Q4_K_M", "mixtral.Q4_K_M"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (c == '.') c = '_';
                           return n;
                         });

TEST(CudaEngineLoad, GpuPlanOnAHostWithoutTheGpuNamesTheOpAndTheWayOut) {
  if (cuda::device_count() != 0) GTEST_SKIP() << "a CUDA device is present";
  auto f = GGUFFile::open(std::string(KTX_SHARED_DIR) + "/models/qwen3moe.Q8_0.gguf");
  ASSERT_TRUE(f) << f.status().message();
  std::shared_ptr<const GGUFFile> g(std::move(f).value());
  auto cfg = ModelConfig::from_gguf(*g);
  ASSERT_TRUE(cfg);
  ReferenceProgram ref = reference_program(*cfg);
  EngineOptions opt;
  opt.threads = 1;
  opt.program = ref.ops;
  opt.buffers = ref.buffers;
  for (PlanOp& op : opt.program)
    if (op.kind == "lm_head") op.device = "gpu";
  opt.gpu_arch = "sm_90a";
  auto m = Model::load(*cfg, g, opt);
  ASSERT_FALSE(m);
  const std::string msg = m.status().message();
  EXPECT_NE(msg.find("plan op 'output' (lm_head) is placed on device 'gpu'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("this host has none"), std::string::npos) << msg;
  EXPECT_NE(msg.find("ktc plan --gpu off"), std::string::npos) << msg;
}

}  // namespace
}  // namespace ktx
