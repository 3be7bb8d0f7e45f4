// The server's counters for GET /metrics, in Prometheus' text exposition format: requests by
// route and status, prompt / cached / generated tokens, prefix-cache hits, and histograms of
// time to first token and inter-token latency. Gauges (queue depth, active sequences, KV
// cache use) are read from the scheduler when the page is rendered. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace ktx::serve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // "name_bucket{le=...} n" lines, _sum and _count.
  std::string render(const std::string& name, const std::string& help) const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); last = +Inf
  double sum_ = 0;
  uint64_t n_ = 0;
};

struct Gauges {
  int64_t queue_depth = 0, active = 0, slots = 0;
  int64_t kv_used_tokens = 0, kv_capacity_tokens = 0;
  int64_t prefix_cached_tokens = 0;  // tokens kept for reuse (cached KV blocks)
  // KV pool blocks: referenced by sequences, cached (unreferenced, holding a prefix), free;
  // cached blocks reused for new content so far.
  int64_t kv_blocks_used = 0, kv_blocks_cached = 0, kv_blocks_free = 0;
  int64_t kv_block_evictions = 0;
};

class Metrics {
 public:
  Metrics();
  void count_request(const std::string& route, int status);
  std::atomic<uint64_t> prompt_tokens{0}, cached_tokens{0}, completion_tokens{0};
  std::atomic<uint64_t> prefix_hits{0}, prefix_misses{0}, aborted{0};
  Histogram ttft, itl;
  std::string render(const Gauges& g) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
};

}  // namespace ktx::serve
