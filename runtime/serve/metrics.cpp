// Metrics (metrics.h): rendering follows the Prometheus text format 0.0.4 (HELP and TYPE lines,
// cumulative le buckets ending with +Inf).
#include "runtime/serve/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace ktx::serve {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t b = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  ++counts_[b];
  sum_ += v;
  ++n_;
}

std::string Histogram::render(const std::string& name, const std::string& help) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string s = fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    s += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cum);
  }
  s += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, n_, name, sum_,
                   name, n_);
  return s;
}

Metrics::Metrics()
    : ttft({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}),
      itl({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}) {}

void Metrics::count_request(const std::string& route, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{route, status}];
}

std::string Metrics::render(const Gauges& g) const {
  std::string s = "# HELP ktx_requests_total HTTP requests by route and status.\n"
                  "# TYPE ktx_requests_total counter\n";
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [k, n] : requests_)
      s += fmt::format("ktx_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", k.first, k.second, n);
  }
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    s += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
  };
  auto gauge = [&](const char* name, const char* help, double v) {
    s += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
  };
  counter("ktx_prompt_tokens_total", "Prompt tokens of admitted requests.", prompt_tokens);
  counter("ktx_prompt_cached_tokens_total", "Prompt tokens taken from the prefix cache.", cached_tokens);
  counter("ktx_completion_tokens_total", "Generated tokens.", completion_tokens);
  counter("ktx_prefix_cache_hits_total", "Requests that reused a cached prefix.", prefix_hits);
  counter("ktx_prefix_cache_misses_total", "Requests that reused no cached prefix.", prefix_misses);
  counter("ktx_requests_aborted_total", "Requests whose client went away before the end.", aborted);
  gauge("ktx_queue_depth", "Requests waiting for a sequence slot.", static_cast<double>(g.queue_depth));
  gauge("ktx_active_sequences", "Sequences in the running batch.", static_cast<double>(g.active));
  gauge("ktx_sequence_slots", "Sequence slots (--parallel).", static_cast<double>(g.slots));
  gauge("ktx_kv_cache_used_tokens", "KV cache positions held by running sequences.",
        static_cast<double>(g.kv_used_tokens));
  gauge("ktx_kv_cache_capacity_tokens", "KV cache positions of the block pool.",
        static_cast<double>(g.kv_capacity_tokens));
  gauge("ktx_kv_cache_usage_ratio", "Used over capacity.",
        g.kv_capacity_tokens ? double(g.kv_used_tokens) / double(g.kv_capacity_tokens) : 0.0);
  gauge("ktx_prefix_cache_tokens", "Tokens kept in cached KV blocks for prefix reuse.",
        static_cast<double>(g.prefix_cached_tokens));
  s += "# HELP ktx_kv_cache_blocks KV pool blocks: used by sequences, cached (evictable "
       "prefixes), free.\n# TYPE ktx_kv_cache_blocks gauge\n";
  s += fmt::format("ktx_kv_cache_blocks{{state=\"used\"}} {}\nktx_kv_cache_blocks{{state=\"cached\"}} "
                   "{}\nktx_kv_cache_blocks{{state=\"free\"}} {}\n",
                   g.kv_blocks_used, g.kv_blocks_cached, g.kv_blocks_free);
  counter("ktx_kv_cache_evictions_total", "Cached KV blocks evicted for new content.",
          static_cast<uint64_t>(g.kv_block_evictions));
  s += ttft.render("ktx_time_to_first_token_seconds", "From arrival to the first generated token.");
  s += itl.render("ktx_inter_token_latency_seconds", "Between consecutive generated tokens.");
  return s;
}

}  // namespace ktx::serve
