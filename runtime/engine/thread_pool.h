// A small fork-join thread pool for the reference engine: parallel_for splits [0, n) into
// contiguous chunks run by the workers and the calling thread. Each index's work is the same
// whatever the chunking, so results do not depend on the thread count.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ktx {

class ThreadPool {
 public:
  // n_threads <= 0: one per hardware thread.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(begin, end) on disjoint chunks covering [0, n); returns when all are done.
  // `grain` is the least number of indices worth handing to a thread. Calls from several
  // threads at once are serialized.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_loop(int id);
  void run_chunks();

  int n_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // one parallel_for at a time

  std::mutex mu_;
  std::condition_variable wake_, done_cv_;
  uint64_t generation_ = 0;
  bool stop_ = false;
  int busy_ = 0;
  // The current job.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, chunk_ = 0, n_chunks_ = 0;
  int64_t next_chunk_ = 0;  // guarded by mu_
};

}  // namespace ktx
