// The node-aware decode path (MoeDecodeOptions::numa) on a pool whose workers are labelled with
// three simulated NUMA nodes (PoolOptions::simulate_nodes; placement unchanged, so this runs on
// any host): every gate/up and down task runs once, on the queue of the node the injected map
// gives its weight rows; the node map is asked once per weights; the result equals the
// single-node fused path bit for bit (the same operations per element, only the task order
// differs).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "common/hw/cpu_features.h"
#include "runtime/cpu/moe_decode.h"
#include "test/unit/cpu/moe_test_util.h"

namespace ktx::cpu {
namespace {

constexpr int kNodes = 3;

MoeDesc numa_desc() {
  // avx2 at most: the same kernels on every CI host.
  const IsaTier isa = std::min(best_isa_tier(detect_cpu_isa()), IsaTier::avx2);
  return test::moe_desc(512, 256, 8, 2, GGMLType::Q4_K, GGMLType::Q4_K, GGMLType::Q8_0, 8, isa);
}

// A fixed, varied placement: by the address of the chunk's first row.
int fake_node(const void* addr, size_t) {
  return static_cast<int>((reinterpret_cast<uintptr_t>(addr) >> 8) % kNodes);
}

TEST(MoeDecodeNuma, TasksGoToTheNodeHoldingTheirRowsAndResultsMatch) {
  const MoeDesc d = numa_desc();
  MoeConfig cfg;
  cfg.rows_per_task = 48;  // tails: 256 = 5·48 + 16, 512 = 10·48 + 32
  int map_calls = 0;
  MoeDecodeOptions numa_opt;
  numa_opt.node_of = [&](const void* a, size_t b) { ++map_calls; return fake_node(a, b); };
  const CpuIsa cpu = detect_cpu_isa();
  auto numa = MoeDecode::create(d, cfg, cpu, numa_opt);
  auto plain = MoeDecode::create(d, cfg, cpu);
  ASSERT_TRUE(numa && plain);
  PoolOptions po;
  po.threads = 4;
  po.simulate_nodes = kNodes;
  ThreadPool nodes_pool(po), flat_pool(4);
  ASSERT_EQ(nodes_pool.n_nodes(), kNodes);

  const auto w = test::random_experts(d, 5);
  const int64_t cg = (d.n_ff + 47) / 48, cd = (d.n_embd + 47) / 48;
  int calls_after_first = -1;
  for (int64_t n_tokens : {1, 3, 8}) {
    const auto x = test::random_floats(n_tokens * d.n_embd, 1.0f, 9 + n_tokens);
    const auto r = test::make_routing(d, n_tokens, test::RoutePattern::spread, 4 + n_tokens);
    std::vector<float> a(x.size(), NAN), b(x.size(), NAN);
    ASSERT_TRUE((*numa)->run(w.view(), x.data(), r.view(n_tokens), a.data(), nodes_pool));
    ASSERT_TRUE((*plain)->run(w.view(), x.data(), r.view(n_tokens), b.data(), flat_pool));
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
        << n_tokens << " tokens: the node-aware order changed the result";
    if (calls_after_first < 0) calls_after_first = map_calls;

    // The expected split, recomputed from the map for the experts this routing uses.
    std::set<int32_t> used(r.ids.begin(), r.ids.begin() + n_tokens * d.top_k);
    std::vector<int64_t> want(kNodes, 0);
    const uint64_t rb_g = ggml_row_bytes(d.gate_type, d.n_embd).value();
    const uint64_t rb_d = ggml_row_bytes(d.down_type, d.n_ff).value();
    for (int32_t e : used) {
      for (int64_t c = 0; c < cg; ++c) {
        ++want[fake_node(w.gate.data() + (e * d.n_ff + c * 48) * rb_g, 0)];
      }
      for (int64_t c = 0; c < cd; ++c) {
        ++want[fake_node(w.down.data() + (e * d.n_embd + c * 48) * rb_d, 0)];
      }
    }
    EXPECT_EQ((*numa)->last_node_tasks(), want) << n_tokens << " tokens";
    EXPECT_TRUE((*plain)->last_node_tasks().empty());
  }
  // Mapped once for all experts at the first call, then reused.
  EXPECT_EQ(calls_after_first, static_cast<int>(d.n_expert * (cg + cd)));
  EXPECT_EQ(map_calls, calls_after_first);
}

TEST(MoeDecodeNuma, OffOrSingleNodeKeepsTheFusedPath) {
  const MoeDesc d = numa_desc();
  MoeDecodeOptions off;
  off.numa = false;
  off.node_of = [](const void*, size_t) -> int {
    ADD_FAILURE() << "the node map must not be asked when the node-aware path is off";
    return 0;
  };
  auto moe = MoeDecode::create(d, MoeConfig{}, detect_cpu_isa(), off);
  ASSERT_TRUE(moe);
  PoolOptions po;
  po.threads = 3;
  po.simulate_nodes = 2;
  ThreadPool pool(po);
  const auto w = test::random_experts(d, 6);
  const auto x = test::random_floats(2 * d.n_embd, 1.0f, 3);
  const auto r = test::make_routing(d, 2, test::RoutePattern::clustered, 8);
  std::vector<float> out(x.size());
  ASSERT_TRUE((*moe)->run(w.view(), x.data(), r.view(2), out.data(), pool));
  EXPECT_TRUE((*moe)->last_node_tasks().empty());
}

}  // namespace
}  // namespace ktx::cpu
