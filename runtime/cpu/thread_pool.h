// The pool the CPU expert kernels run on. Decode issues several short parallel phases per layer,
// microseconds apart, so workers spin briefly after a job and only then sleep on a futex (an
// idle runtime costs no CPU). Tasks are handed out through atomic counters, so uneven tasks
// balance themselves.
//
// Placement: by default one thread per usable physical core (topology.h), each worker pinned to
// its core's first logical CPU; hyperthread siblings are used only when more threads than cores
// are asked for. Workers are spread over NUMA nodes in turn and labelled with their node, so a
// caller that knows which node holds which rows (rows_by_node) can hand each node its own rows:
// parallel_for_nodes() gives every node a queue its workers drain first (then they help the
// others, so no thread idles), parallel_for_node() runs a job on one node's workers only. The
// model is never replicated. KTX_PIN=0 in the environment turns pinning off (for comparisons).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/util/status.h"
#include "runtime/cpu/topology.h"

namespace ktx::cpu {

struct PoolOptions {
  int threads = 0;               // counting the caller; 0 = one per usable physical core
  int spin_iterations = 20000;   // pause instructions a worker spins before sleeping
  bool pin = true;               // pin workers (also off when KTX_PIN=0 is set)
  // Tests of node-aware callers on single-node hosts: label the slots with this many nodes in
  // turn (caller slot 0 -> node 0) instead of the topology's. Placement is unchanged.
  int simulate_nodes = 0;
};

class ThreadPool {
 public:
  // `n_threads` counts the calling thread too; 0 means one per usable physical core.
  explicit ThreadPool(int n_threads = 0, int spin_iterations = 20000);
  explicit ThreadPool(const PoolOptions& options);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Run fn(task) for every task in [0, n_tasks) on the workers and the caller; returns when all
  // are done. Calls from several threads are serialized; a call from inside a task of this pool
  // runs its tasks inline on that thread (same results, no deadlock). fn must not throw.
  void parallel_for(int64_t n_tasks, const std::function<void(int64_t)>& fn);

  // Node-aware split: node n's tasks are fn(n, 0..n_per_node[n]-1); each worker drains its own
  // node's queue first, then takes tasks of other nodes. Error if n_per_node has more entries
  // than the pool has nodes.
  Status parallel_for_nodes(const std::vector<int64_t>& n_per_node,
                            const std::function<void(int node, int64_t task)>& fn);
  // fn(task) for tasks [0, n_tasks) run only by the workers of `node` (the caller joins only
  // when that node has no worker). Error for a node outside [0, n_nodes()).
  Status parallel_for_node(int node, int64_t n_tasks, const std::function<void(int64_t)>& fn);

  // While a Hot exists, idle workers keep spinning instead of sleeping on the futex after
  // spin_iterations: a caller that issues short jobs with gaps longer than the spin (the CPU
  // experts of a GPU-driven decode step, one job per MoE layer with the GPU's work between)
  // then finds every worker awake and on its core, with no futex wake-up or C-state exit on
  // the critical path. Costs the idle cores' spinning for the scope's life.
  class Hot {
   public:
    explicit Hot(ThreadPool& pool) : pool_(&pool) { pool_->hot_.fetch_add(1, std::memory_order_relaxed); }
    ~Hot() { pool_->hot_.fetch_sub(1, std::memory_order_relaxed); }
    Hot(const Hot&) = delete;
    Hot& operator=(const Hot&) = delete;

   private:
    ThreadPool* pool_;
  };
  // Workers asleep on the futex now (tests, diagnostics).
  int sleeping_workers() const { return sleeping_workers_.load(std::memory_order_relaxed); }

  int n_nodes() const { return n_nodes_; }
  // Threads labelled with `node`, the caller's slot included.
  int node_threads(int node) const;
  // The logical CPU each worker is pinned to (-1: not pinned), worker order. The caller
  // thread is never pinned: the pool does not change its owner's affinity.
  const std::vector<int>& worker_cpus() const { return worker_cpu_; }
  bool pinned() const { return pinned_; }
  // The CPU the pin order leaves to the caller's slot (the first of the order; no worker is
  // pinned there), or -1 when the workers are not pinned.
  int caller_cpu() const { return caller_cpu_; }
  // Pins the calling thread to caller_cpu(), for a caller that is not the thread that made the
  // pool (a server's scheduler thread): left anywhere, it may share a core with a pinned worker
  // that spins between jobs, and then every parallel phase waits out the other's time slices.
  // Returns false (and changes nothing) when the pool is not pinned or the call fails.
  bool pin_caller() const;
  const Topology& topology() const { return topo_; }

 private:
  struct alignas(64) Queue {
    std::atomic<int64_t> next{0};
    int64_t count = 0;
  };
  void start(const PoolOptions& options);
  void worker_loop(int index);
  void run_job(int node);
  void dispatch(int node_only, bool caller_joins);
  bool take_from(int q);

  Topology topo_;
  int n_nodes_ = 1;
  int spin_iterations_ = 20000;
  bool pinned_ = false;
  std::vector<std::thread> workers_;
  std::vector<int> worker_cpu_;   // [workers]
  std::vector<int> worker_node_;  // [workers]
  int caller_node_ = 0;           // node label of slot 0
  int caller_cpu_ = -1;           // slot 0's CPU when the workers are pinned
  bool simulated_nodes_ = false;  // PoolOptions::simulate_nodes: labels are not the topology's

  std::mutex call_mutex_;         // one job at a time
  // Futex words: generation_ wakes workers, active_ counts workers still in the current job.
  std::atomic<uint32_t> generation_{0};
  std::atomic<int32_t> active_{0};
  std::atomic<int32_t> sleeping_workers_{0};
  std::atomic<int32_t> caller_sleeping_{0};
  std::atomic<int32_t> hot_{0};  // live Hot scopes: idle workers do not sleep
  bool stop_ = false;
  // The current job (written by the caller before bumping generation_).
  std::unique_ptr<Queue[]> queues_;   // [n_nodes]; plain parallel_for uses queue 0
  int n_queues_ = 1;
  int job_node_only_ = -1;            // >= 0: only that node's workers take part
  const std::function<void(int64_t)>* fn_ = nullptr;
  const std::function<void(int, int64_t)>* node_fn_ = nullptr;
};

// fn(begin, end) over disjoint contiguous chunks covering [0, n), each of at least `grain`
// indices (the last may be shorter), about four chunks per thread: the range form of
// parallel_for for loops whose indices cost the same.
void parallel_range(ThreadPool& pool, int64_t n, int64_t grain,
                    const std::function<void(int64_t, int64_t)>& fn);

}  // namespace ktx::cpu
