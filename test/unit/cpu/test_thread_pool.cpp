// ThreadPool and topology: every task runs exactly once (many jobs, uneven tasks, several
// calling threads), nested calls run inline, node-restricted jobs, one-thread pools, and that
// workers really are pinned to the CPUs the pool reports (affinity masks read in the workers).
#include <gtest/gtest.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "runtime/cpu/thread_pool.h"
#include "runtime/cpu/topology.h"

namespace ktx::cpu {
namespace {

std::vector<int> my_affinity() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> out;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return out;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) out.push_back(c);
  }
  return out;
}

void expect_each_once(const std::vector<std::atomic<int>>& hits) {
  for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i].load(), 1) << "task " << i;
}

TEST(Topology, CoversExactlyTheAllowedCpus) {
  auto topo = discover_topology();
  ASSERT_TRUE(topo.has_value()) << topo.status().message();
  std::set<int> pus;
  for (const auto& c : topo->cores) {
    ASSERT_FALSE(c.pus.empty());
    ASSERT_LT(c.node, topo->n_nodes);
    for (int p : c.pus) ASSERT_TRUE(pus.insert(p).second) << "cpu " << p << " in two cores";
  }
  const auto allowed = my_affinity();
  EXPECT_EQ(std::vector<int>(pus.begin(), pus.end()), allowed) << "source " << topo->source;
  // One entry per core first (no sibling before every core has one), every PU once with smt.
  const auto primary = topo->pin_order(false);
  EXPECT_EQ(primary.size(), topo->cores.size());
  const auto all = topo->pin_order(true);
  EXPECT_EQ(std::set<int>(all.begin(), all.end()), pus);
  EXPECT_TRUE(std::equal(primary.begin(), primary.end(), all.begin()));
}

TEST(Topology, ParsesCpuLists) {
  EXPECT_EQ(parse_cpu_list("0-3,8,10-11").value(), (std::vector<int>{0, 1, 2, 3, 8, 10, 11}));
  EXPECT_EQ(parse_cpu_list("").value(), std::vector<int>{});
  for (const char* bad : {"3-1", "a", "1,,2", "-2", "4-"}) {
    auto r = parse_cpu_list(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_NE(r.status().message().find(bad), std::string::npos) << r.status().message();
  }
}

TEST(Topology, MemoryNodesCoverEveryRow) {
  std::vector<char> buf(1 << 20, 1);
  const int node = memory_node(buf.data(), buf.size());
  EXPECT_GE(node, 0);
  EXPECT_LT(node, host_topology().n_nodes);
  const auto runs = rows_by_node(buf.data(), 1000, 1024, 7);
  ASSERT_FALSE(runs.empty());
  EXPECT_EQ(runs.front().begin, 0);
  EXPECT_EQ(runs.back().end, 1000);
  for (size_t i = 1; i < runs.size(); ++i) EXPECT_EQ(runs[i].begin, runs[i - 1].end);
}

TEST(ThreadPool, EveryTaskOnceUnderContention) {
  // More threads than this machine may have cores: workers then share CPUs and sleep/wake.
  ThreadPool pool(6, 50);
  for (int64_t n : {2, 3, 7, 64, 1000}) {
    for (int rep = 0; rep < 20; ++rep) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.parallel_for(n, [&](int64_t t) {
        if (t % 5 == 0) std::this_thread::yield();  // uneven tasks
        hits[static_cast<size_t>(t)].fetch_add(1);
      });
      expect_each_once(hits);
    }
  }
}

TEST(ThreadPool, SeveralCallersAreSerialized) {
  ThreadPool pool(3, 0);  // no spinning: every job goes through the futex sleep path
  std::vector<std::atomic<int>> hits(4 * 50 * 37);
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&, c] {
      for (int job = 0; job < 50; ++job) {
        pool.parallel_for(37, [&](int64_t t) { hits[size_t((c * 50 + job) * 37 + t)]++; });
      }
    });
  }
  for (auto& t : callers) t.join();
  expect_each_once(hits);
}

TEST(ThreadPool, NestedCallsRunInline) {
  ThreadPool pool(4);
  std::vector<std::atomic<int>> hits(16 * 8);
  pool.parallel_for(16, [&](int64_t outer) {
    pool.parallel_for(8, [&](int64_t inner) { hits[size_t(outer * 8 + inner)]++; });
  });
  expect_each_once(hits);
}

// Workers sleep once their spin runs out, except while a Hot scope lives; jobs still run
// exactly once in both states, and they fall asleep again after the scope ends.
TEST(ThreadPool, HotScopeKeepsWorkersAwake) {
  ThreadPool pool(3, /*spin_iterations=*/100);
  std::vector<std::atomic<int>> hits(64);
  auto all_asleep_within = [&](std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (pool.sleeping_workers() < pool.size() - 1 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return pool.sleeping_workers() == pool.size() - 1;
  };
  pool.parallel_for(32, [&](int64_t t) { hits[size_t(t)]++; });
  ASSERT_TRUE(all_asleep_within(std::chrono::seconds(5)));
  {
    ThreadPool::Hot hot(pool);
    pool.parallel_for(32, [&](int64_t t) { hits[size_t(32 + t)]++; });  // wakes them
    std::this_thread::sleep_for(std::chrono::milliseconds(50));        // far past 100 pauses
    EXPECT_EQ(pool.sleeping_workers(), 0);
  }
  expect_each_once(hits);
  EXPECT_TRUE(all_asleep_within(std::chrono::seconds(5)));
}

TEST(ThreadPool, OneThreadRunsOnTheCaller) {
  ThreadPool pool(1);
  EXPECT_EQ(pool.size(), 1);
  EXPECT_TRUE(pool.worker_cpus().empty());
  const auto caller = std::this_thread::get_id();
  std::vector<std::atomic<int>> hits(10);
  pool.parallel_for(10, [&](int64_t t) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    hits[size_t(t)]++;
  });
  expect_each_once(hits);
  ASSERT_TRUE(pool.parallel_for_node(0, 3, [&](int64_t t) { hits[size_t(t)]++; }).is_ok());
  EXPECT_EQ(hits[2].load(), 2);
}

TEST(ThreadPool, NodeJobs) {
  ThreadPool pool(3);
  const int nodes = pool.n_nodes();
  int total = 0;
  for (int n = 0; n < nodes; ++n) total += pool.node_threads(n);
  EXPECT_EQ(total, pool.size());
  std::vector<int64_t> per_node(static_cast<size_t>(nodes));
  for (int n = 0; n < nodes; ++n) per_node[size_t(n)] = 10 + 7 * n;
  std::mutex mu;
  std::set<std::pair<int, int64_t>> seen;
  int runs = 0;
  ASSERT_TRUE(pool.parallel_for_nodes(per_node, [&](int node, int64_t t) {
                    std::lock_guard<std::mutex> lk(mu);
                    seen.insert({node, t});
                    ++runs;
                  }).is_ok());
  int64_t expected = 0;
  for (int64_t c : per_node) expected += c;
  EXPECT_EQ(runs, expected);
  EXPECT_EQ(int64_t(seen.size()), expected);
  std::vector<std::atomic<int>> hits(33);
  ASSERT_TRUE(pool.parallel_for_node(0, 33, [&](int64_t t) { hits[size_t(t)]++; }).is_ok());
  expect_each_once(hits);
  auto bad = pool.parallel_for_node(nodes, 1, [](int64_t) {});
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.message().find("node " + std::to_string(nodes)), std::string::npos);
  auto too_many = pool.parallel_for_nodes(std::vector<int64_t>(size_t(nodes) + 1, 1),
                                          [](int, int64_t) {});
  EXPECT_FALSE(too_many.is_ok());
}

// Each of the pool's threads takes exactly one task (a task waits until all have started) and
// reads its own affinity mask: workers must be bound to exactly the CPU the pool reports.
TEST(ThreadPool, WorkersArePinnedWhereReported) {
  const Topology& topo = host_topology();
  const int n = std::min<int>(static_cast<int>(topo.cores.size()), 4);
  if (n < 2) GTEST_SKIP() << "only one usable core: a pool of one thread has no worker to pin";
  ThreadPool pool(n);
  ASSERT_TRUE(pool.pinned()) << "topology source " << topo.source;
  const auto caller = std::this_thread::get_id();
  std::atomic<int> started{0};
  std::mutex mu;
  std::vector<std::vector<int>> masks;
  bool all_started = true;
  pool.parallel_for(n, [&](int64_t) {
    started++;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (started.load() < n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    std::lock_guard<std::mutex> lk(mu);
    all_started = all_started && started.load() == n;
    if (std::this_thread::get_id() != caller) masks.push_back(my_affinity());
  });
  ASSERT_TRUE(all_started);
  ASSERT_EQ(masks.size(), size_t(n - 1));
  std::multiset<int> got, want(pool.worker_cpus().begin(), pool.worker_cpus().end());
  for (const auto& m : masks) {
    ASSERT_EQ(m.size(), 1u) << "a worker may run on several CPUs";
    got.insert(m[0]);
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(std::set<int>(want.begin(), want.end()).size(), want.size()) << "two on one CPU";
}

// A caller that is not the pool's creator (a server's scheduler thread) pins itself to the CPU
// no worker holds, and its parallel_for runs as before.
TEST(ThreadPool, CallerPinsToTheCpuNoWorkerHolds) {
  const Topology& topo = host_topology();
  const int n = std::min<int>(static_cast<int>(topo.cores.size()), 4);
  if (n < 2) GTEST_SKIP() << "only one usable core: a pool of one thread has no worker to pin";
  ThreadPool pool(n);
  ASSERT_TRUE(pool.pinned()) << "topology source " << topo.source;
  ASSERT_GE(pool.caller_cpu(), 0);
  for (int c : pool.worker_cpus()) EXPECT_NE(c, pool.caller_cpu()) << "a worker holds the caller's CPU";
  std::vector<int> mask;
  std::atomic<int64_t> sum{0};
  bool pinned = false;
  std::thread t([&] {
    pinned = pool.pin_caller();
    mask = my_affinity();
    pool.parallel_for(100, [&](int64_t i) { sum += i; });
  });
  t.join();
  EXPECT_TRUE(pinned);
  EXPECT_EQ(mask, std::vector<int>{pool.caller_cpu()});
  EXPECT_EQ(sum.load(), 4950);
  // An unpinned pool leaves callers alone.
  ThreadPool one(1);
  EXPECT_EQ(one.caller_cpu(), -1);
  EXPECT_FALSE(one.pin_caller());
}

}  // namespace
}  // namespace ktx::cpu
