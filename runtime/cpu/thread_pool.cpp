// ThreadPool: see thread_pool.h. The generation counter is what workers wait on; every worker
// acknowledges every generation exactly once (the caller waits for all of them before the next
// job can start), so none can miss a job or run one twice, and a worker that does not take part
// in a node-restricted job never reads the next job's fields early. Sleeping uses raw futexes on
// the two counters; the "sleeping" flags are read after the counter is changed (both seq_cst),
// so a waker either sees a sleeper or the sleeper's futex sees the new value (no lost wake-up).
#include "runtime/cpu/thread_pool.h"

#include <immintrin.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <latch>

namespace ktx::cpu {
namespace {

static_assert(sizeof(std::atomic<uint32_t>) == 4 && std::atomic<uint32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<int32_t>) == 4 && std::atomic<int32_t>::is_always_lock_free);

void futex_wait(void* word, uint32_t expected) {
  syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}
void futex_wake(void* word, int n) {
  syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, n, nullptr, nullptr, 0);
}

// The pool whose task the current thread is running (nested calls run inline).
thread_local const ThreadPool* tls_running = nullptr;

struct RunningScope {
  explicit RunningScope(const ThreadPool* p) : prev(tls_running) { tls_running = p; }
  ~RunningScope() { tls_running = prev; }
  const ThreadPool* prev;
};

// Pins the calling thread to one logical CPU; false when the kernel refuses.
bool pin_self(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

bool pin_env_allows() {
  const char* v = std::getenv("KTX_PIN");
  return !(v && std::strcmp(v, "0") == 0);
}

}  // namespace

ThreadPool::ThreadPool(int n_threads, int spin_iterations) {
  PoolOptions o;
  o.threads = n_threads;
  o.spin_iterations = spin_iterations;
  start(o);
}

ThreadPool::ThreadPool(const PoolOptions& options) { start(options); }

void ThreadPool::start(const PoolOptions& options) {
  topo_ = host_topology();
  simulated_nodes_ = options.simulate_nodes > 0;
  n_nodes_ = simulated_nodes_ ? options.simulate_nodes : std::max(1, topo_.n_nodes);
  spin_iterations_ = std::max(0, options.spin_iterations);
  const int n = options.threads > 0 ? options.threads : static_cast<int>(topo_.cores.size());
  // Slot 0 is the caller; workers take slots 1..n-1 of the pin order. More threads than usable
  // CPUs would put two spinning workers on one CPU: then nobody is pinned.
  const std::vector<int> order = topo_.pin_order(/*smt=*/true);
  const bool pin = options.pin && pin_env_allows() && n <= static_cast<int>(order.size());
  auto slot_node = [&](int slot) {
    if (simulated_nodes_) return slot % n_nodes_;
    return slot < static_cast<int>(order.size()) ? topo_.node_of_cpu(order[size_t(slot)])
                                                 : slot % n_nodes_;
  };
  caller_node_ = slot_node(0);
  queues_ = std::make_unique<Queue[]>(size_t(n_nodes_));
  const int n_workers = std::max(n, 1) - 1;
  worker_cpu_.assign(size_t(n_workers), -1);
  worker_node_.resize(size_t(n_workers));
  std::latch started(n_workers);
  workers_.reserve(size_t(n_workers));
  for (int i = 0; i < n_workers; ++i) {
    worker_node_[size_t(i)] = slot_node(i + 1);
    const int cpu = pin ? order[size_t(i + 1)] : -1;
    workers_.emplace_back([this, i, cpu, &started] {
      if (cpu >= 0 && pin_self(cpu)) worker_cpu_[size_t(i)] = cpu;
      started.count_down();
      worker_loop(i);
    });
  }
  started.wait();
  pinned_ = n_workers > 0 && std::all_of(worker_cpu_.begin(), worker_cpu_.end(),
                                         [](int c) { return c >= 0; });
  caller_cpu_ = pinned_ && !order.empty() ? order[0] : -1;
}

bool ThreadPool::pin_caller() const { return caller_cpu_ >= 0 && pin_self(caller_cpu_); }

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(call_mutex_);
    stop_ = true;
    generation_.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(&generation_, INT_MAX);
  }
  for (auto& w : workers_) w.join();
}

int ThreadPool::node_threads(int node) const {
  int n = caller_node_ == node ? 1 : 0;
  for (int wn : worker_node_) n += wn == node ? 1 : 0;
  return n;
}

bool ThreadPool::take_from(int q) {
  Queue& queue = queues_[size_t(q)];
  bool any = false;
  for (;;) {
    const int64_t task = queue.next.fetch_add(1, std::memory_order_relaxed);
    if (task >= queue.count) return any;
    any = true;
    if (node_fn_) {
      (*node_fn_)(q, task);
    } else {
      (*fn_)(task);
    }
  }
}

// Own node's queue first, then (for unrestricted jobs) every other queue.
void ThreadPool::run_job(int node) {
  RunningScope scope(this);
  const int own = n_queues_ > 1 ? std::min(node, n_queues_ - 1) : 0;
  take_from(own);
  if (job_node_only_ >= 0) return;
  for (int q = 0; q < n_queues_; ++q) {
    if (q != own) take_from(q);
  }
}

void ThreadPool::worker_loop(int index) {
  uint32_t seen = 0;
  const int node = worker_node_[size_t(index)];
  for (;;) {
    for (int i = 0; i < spin_iterations_ || hot_.load(std::memory_order_relaxed) > 0; ++i) {
      if (generation_.load(std::memory_order_acquire) != seen) break;
      _mm_pause();
    }
    if (generation_.load(std::memory_order_acquire) == seen) {
      sleeping_workers_.fetch_add(1, std::memory_order_seq_cst);
      while (generation_.load(std::memory_order_seq_cst) == seen) futex_wait(&generation_, seen);
      sleeping_workers_.fetch_sub(1, std::memory_order_relaxed);
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_) return;
    if (job_node_only_ < 0 || job_node_only_ == node) run_job(node);
    if (active_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
        caller_sleeping_.load(std::memory_order_seq_cst)) {
      futex_wake(&active_, 1);
    }
  }
}

// Starts the job described by queues_/fn_ (already set), optionally helps, waits for the end.
void ThreadPool::dispatch(int node_only, bool caller_joins) {
  job_node_only_ = node_only;
  active_.store(static_cast<int32_t>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  if (sleeping_workers_.load(std::memory_order_seq_cst) > 0) futex_wake(&generation_, INT_MAX);
  if (caller_joins) {
    const int cpu = simulated_nodes_ ? -1 : sched_getcpu();
    run_job(cpu >= 0 ? topo_.node_of_cpu(cpu) : caller_node_);
  }
  for (int i = 0; i < spin_iterations_; ++i) {
    if (active_.load(std::memory_order_acquire) == 0) break;
    _mm_pause();
  }
  caller_sleeping_.store(1, std::memory_order_seq_cst);
  for (int32_t v; (v = active_.load(std::memory_order_seq_cst)) != 0;) {
    futex_wait(&active_, static_cast<uint32_t>(v));
  }
  caller_sleeping_.store(0, std::memory_order_relaxed);
  fn_ = nullptr;
  node_fn_ = nullptr;
}

void ThreadPool::parallel_for(int64_t n_tasks, const std::function<void(int64_t)>& fn) {
  if (n_tasks <= 0) return;
  if (workers_.empty() || n_tasks == 1 || tls_running == this) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t);
    return;
  }
  std::lock_guard<std::mutex> lk(call_mutex_);
  fn_ = &fn;
  n_queues_ = 1;
  queues_[0].count = n_tasks;
  queues_[0].next.store(0, std::memory_order_relaxed);
  dispatch(-1, true);
}

Status ThreadPool::parallel_for_nodes(const std::vector<int64_t>& n_per_node,
                                      const std::function<void(int, int64_t)>& fn) {
  if (n_per_node.size() > size_t(n_nodes_)) {
    return Error("parallel_for_nodes: {} task counts for a pool spanning {} NUMA node(s)",
                 n_per_node.size(), n_nodes_);
  }
  if (workers_.empty() || tls_running == this) {
    for (size_t n = 0; n < n_per_node.size(); ++n) {
      for (int64_t t = 0; t < n_per_node[n]; ++t) fn(int(n), t);
    }
    return Status::ok();
  }
  std::lock_guard<std::mutex> lk(call_mutex_);
  node_fn_ = &fn;
  n_queues_ = static_cast<int>(std::max<size_t>(1, n_per_node.size()));
  for (int q = 0; q < n_queues_; ++q) {
    queues_[size_t(q)].count = size_t(q) < n_per_node.size() ? n_per_node[size_t(q)] : 0;
    queues_[size_t(q)].next.store(0, std::memory_order_relaxed);
  }
  dispatch(-1, true);
  return Status::ok();
}

Status ThreadPool::parallel_for_node(int node, int64_t n_tasks,
                                     const std::function<void(int64_t)>& fn) {
  if (node < 0 || node >= n_nodes_) {
    return Error("parallel_for_node: node {} outside this pool's nodes [0, {})", node, n_nodes_);
  }
  if (n_tasks <= 0) return Status::ok();
  const bool node_has_workers =
      std::find(worker_node_.begin(), worker_node_.end(), node) != worker_node_.end();
  if (!node_has_workers || tls_running == this) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t);
    return Status::ok();
  }
  std::lock_guard<std::mutex> lk(call_mutex_);
  fn_ = &fn;
  n_queues_ = 1;
  queues_[0].count = n_tasks;
  queues_[0].next.store(0, std::memory_order_relaxed);
  dispatch(node, false);
  return Status::ok();
}

void parallel_range(ThreadPool& pool, int64_t n, int64_t grain,
                    const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t by_grain = (n + grain - 1) / grain;
  const int64_t n_chunks = std::min<int64_t>(by_grain, 4 * static_cast<int64_t>(pool.size()));
  if (n_chunks <= 1) {
    fn(0, n);
    return;
  }
  const int64_t chunk = (n + n_chunks - 1) / n_chunks;
  pool.parallel_for((n + chunk - 1) / chunk, [&](int64_t c) {
    fn(c * chunk, std::min(n, (c + 1) * chunk));
  });
}

}  // namespace ktx::cpu
