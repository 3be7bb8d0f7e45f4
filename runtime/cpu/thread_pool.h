// A small pool for the CPU expert kernels: fixed workers that spin briefly after a job (decode
// issues several short parallel phases per layer, microseconds apart) and then sleep on a
// condition variable so an idle runtime costs no CPU. Tasks are handed out through one atomic
// counter, so uneven tasks balance themselves. Pinning by topology (hwloc) and NUMA-aware
// splitting are the next step (docs/kernels.md).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ktx::cpu {

class ThreadPool {
 public:
  // `n_threads` counts the calling thread too; 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(int n_threads = 0, int spin_iterations = 20000);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Run fn(task) for every task in [0, n_tasks) on the workers and the caller; returns when all
  // are done. One caller at a time (the runtime drives a layer from one thread).
  void parallel_for(int64_t n_tasks, const std::function<void(int64_t)>& fn);

 private:
  void worker_loop();
  void run_tasks();

  std::vector<std::thread> workers_;
  int spin_iterations_;
  std::mutex mutex_;
  std::condition_variable cv_work_;
  std::condition_variable cv_done_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> active_{0};
  bool stop_ = false;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t n_tasks_ = 0;
  std::atomic<int64_t> next_{0};
};

}  // namespace ktx::cpu
