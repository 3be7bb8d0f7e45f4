// Multi-threaded streaming read-bandwidth measurement. Routed experts are streamed from DRAM
// once per token, so this number (not peak FLOPs) bounds CPU decode speed and is what the
// planner's roofline uses. Each thread first-touches its own slice (so pages land on its NUMA
// node), then all threads sum their slices in lock-step passes; the best pass counts.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "common/hw/hw_probe_internal.h"

namespace ktx {
namespace {

using Clock = std::chrono::steady_clock;

__attribute__((target("avx2"))) uint64_t sum_words_avx2(const uint64_t* p, size_t n) {
  // Four independent accumulators keep enough loads in flight to saturate a core's share of
  // DRAM bandwidth; n is a multiple of 16 words (the slices are 4 KiB-aligned).
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), a0);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

uint64_t sum_words_scalar(const uint64_t* p, size_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (size_t i = 0; i < n; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  return s0 + s1 + s2 + s3;
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

}  // namespace

uint64_t bandwidth_buffer_bytes(uint64_t total_ram_bytes) {
  return std::min<uint64_t>(1ull << 30, total_ram_bytes / 8);
}

Expected<double> measure_read_bandwidth(uint64_t buffer_bytes, int threads, double seconds,
                                        bool use_avx2) {
  constexpr uint64_t kAlign = 4096;
  if (threads < 1) return Error("bandwidth: threads must be >= 1, got {}", threads);
  const uint64_t slice = buffer_bytes / uint64_t(threads) / kAlign * kAlign;
  if (slice == 0) {
    return Error("bandwidth: buffer of {} bytes is too small for {} threads", buffer_bytes,
                 threads);
  }
  const uint64_t total = slice * uint64_t(threads);
  std::unique_ptr<uint8_t, FreeDeleter> buf(
      static_cast<uint8_t*>(std::aligned_alloc(kAlign, total)));
  if (!buf) return Error("bandwidth: cannot allocate a {} byte buffer", total);

  constexpr int kMinPasses = 2;
  constexpr int kMaxPasses = 50;
  std::vector<Clock::time_point> t0(threads), t1(threads);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> sink{0};
  double best_s = 0;
  int passes = 0;
  const auto start = Clock::now();
  // Runs once per pass when every thread has finished it: score the pass, decide to go on.
  auto on_pass_done = [&]() noexcept {
    if (passes > 0) {
      const auto b = *std::min_element(t0.begin(), t0.end());
      const auto e = *std::max_element(t1.begin(), t1.end());
      const double s = std::chrono::duration<double>(e - b).count();
      if (best_s == 0 || s < best_s) best_s = s;
    }
    ++passes;
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    // passes counts the first-touch round as pass 0.
    if (passes > kMinPasses && (elapsed >= seconds || passes > kMaxPasses)) stop = true;
  };
  std::barrier sync(threads, on_pass_done);
  auto worker = [&](int i) {
    uint64_t* p = reinterpret_cast<uint64_t*>(buf.get() + slice * uint64_t(i));
    const size_t n = slice / sizeof(uint64_t);
    std::memset(p, i + 1, slice);  // first touch by the thread that will read it
    sync.arrive_and_wait();
    while (!stop.load()) {
      t0[i] = Clock::now();
      const uint64_t s = use_avx2 ? sum_words_avx2(p, n) : sum_words_scalar(p, n);
      t1[i] = Clock::now();
      sink.fetch_add(s, std::memory_order_relaxed);
      sync.arrive_and_wait();
    }
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(worker, i);
  worker(0);
  for (auto& t : pool) t.join();
  if (best_s <= 0) return Error("bandwidth: timer resolution too coarse to measure");
  return double(total) / best_s / 1e9;
}

}  // namespace ktx
