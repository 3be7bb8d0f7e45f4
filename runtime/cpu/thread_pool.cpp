// ThreadPool: see thread_pool.h. The generation counter is what workers wait on; every worker
// takes part in every generation exactly once (parallel_for waits for all of them before the
// next one can start), so none can miss a job or run one twice.
#include "runtime/cpu/thread_pool.h"

#include <immintrin.h>

#include <algorithm>

namespace ktx::cpu {

ThreadPool::ThreadPool(int n_threads, int spin_iterations) : spin_iterations_(spin_iterations) {
  int n = n_threads > 0 ? n_threads : static_cast<int>(std::thread::hardware_concurrency());
  n = std::max(n, 1);
  workers_.reserve(static_cast<size_t>(n - 1));
  for (int i = 0; i < n - 1; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mutex_);
    stop_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_work_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run_tasks() {
  for (;;) {
    const int64_t task = next_.fetch_add(1, std::memory_order_relaxed);
    if (task >= n_tasks_) return;
    (*fn_)(task);
  }
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  for (;;) {
    for (int i = 0; i < spin_iterations_; ++i) {
      if (generation_.load(std::memory_order_acquire) != seen) break;
      _mm_pause();
    }
    {
      std::unique_lock<std::mutex> lk(mutex_);
      cv_work_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      if (stop_) return;
      seen = generation_.load(std::memory_order_acquire);
    }
    run_tasks();
    if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lk(mutex_);
      cv_done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n_tasks, const std::function<void(int64_t)>& fn) {
  if (n_tasks <= 0) return;
  if (workers_.empty() || n_tasks == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(mutex_);
    fn_ = &fn;
    n_tasks_ = n_tasks;
    next_.store(0, std::memory_order_relaxed);
    active_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_work_.notify_all();
  run_tasks();
  for (int i = 0; i < spin_iterations_; ++i) {
    if (active_.load(std::memory_order_acquire) == 0) return;
    _mm_pause();
  }
  std::unique_lock<std::mutex> lk(mutex_);
  cv_done_.wait(lk, [&] { return active_.load(std::memory_order_acquire) == 0; });
}

}  // namespace ktx::cpu
