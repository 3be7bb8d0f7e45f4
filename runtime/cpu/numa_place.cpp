// NUMA placement of routed-expert weights (see numa_place.h).
#include "runtime/cpu/numa_place.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>

#include "runtime/cpu/thread_pool.h"

namespace ktx::cpu {
namespace {

constexpr int kMpolMfMove = 1 << 1;       // MPOL_MF_MOVE (linux/mempolicy.h)
constexpr uint64_t kPagesPerBatch = 1024;  // pages per move_pages call

}  // namespace

int placement_node(int64_t chunk, int64_t chunks, int n_nodes) {
  if (n_nodes <= 1 || chunks <= 0) return 0;
  return static_cast<int>(std::clamp<int64_t>(chunk, 0, chunks - 1) * n_nodes / chunks);
}

std::vector<PageRun> plan_placement(const void* base, int64_t n_mat, int64_t rows,
                                    uint64_t row_bytes, int64_t rows_per_chunk, int n_nodes,
                                    size_t page) {
  std::vector<PageRun> runs;
  if (n_mat <= 0 || rows <= 0 || row_bytes == 0 || page == 0) return runs;
  const int64_t per_chunk = std::max<int64_t>(1, rows_per_chunk);
  const int64_t chunks = (rows + per_chunk - 1) / per_chunk;
  const uintptr_t start = reinterpret_cast<uintptr_t>(base);
  const uintptr_t end = start + static_cast<uintptr_t>(n_mat * rows) * row_bytes;
  const uintptr_t first_page = start / page * page, last_end = (end + page - 1) / page * page;
  // The node of the chunk holding byte `addr` (clamped into the tensor).
  auto node_at = [&](uintptr_t addr) {
    const uint64_t off = std::clamp(addr, start, end - 1) - start;
    const int64_t row = static_cast<int64_t>(off / row_bytes) % rows;
    return placement_node(row / per_chunk, chunks, n_nodes);
  };
  // Walk chunk boundaries instead of pages: a node changes only where a chunk starts.
  uintptr_t cur = first_page;
  int cur_node = node_at(start);
  for (int64_t m = 0; m < n_mat; ++m) {
    for (int64_t c = 0; c < chunks; ++c) {
      const uintptr_t chunk_start =
          start + static_cast<uintptr_t>(m * rows + c * per_chunk) * row_bytes;
      // The page whose first byte lies in this chunk: the first page starting at or after it.
      const uintptr_t p = (chunk_start + page - 1) / page * page;
      if (p <= cur || p >= last_end) continue;
      const int node = node_at(p);
      if (node == cur_node) continue;
      runs.push_back({cur_node, cur, p});
      cur = p, cur_node = node;
    }
  }
  runs.push_back({cur_node, cur, last_end});
  return runs;
}

Expected<PlaceResult> place_pages(const std::vector<PageRun>& runs, ThreadPool& pool) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  struct Batch {
    int node;
    uintptr_t begin;
    uint64_t pages;
  };
  std::vector<std::vector<Batch>> queues(static_cast<size_t>(pool.n_nodes()));
  PlaceResult result;
  for (const PageRun& r : runs) {
    if (r.end <= r.begin) continue;
    if (r.begin % page != 0 || r.end % page != 0 || r.node < 0)
      return Error("numa placement: run [{:#x}, {:#x}) for node {} is not page-aligned", r.begin,
                   r.end, r.node);
    const uint64_t n = (r.end - r.begin) / page;
    result.pages += n;
    // Touching from the target node's workers makes a page read now land there directly.
    auto& q = queues[static_cast<size_t>(r.node < pool.n_nodes() ? r.node : 0)];
    for (uint64_t i = 0; i < n; i += kPagesPerBatch)
      q.push_back({r.node, r.begin + i * page, std::min(kPagesPerBatch, n - i)});
  }
  std::mutex mu;  // guards the tallies below (one update per batch of pages)
  std::map<int, int> first_errno;  // node -> errno of its first refused page or call
  std::map<int, uint64_t> node_placed;
  std::vector<int64_t> counts;
  for (const auto& q : queues) counts.push_back(static_cast<int64_t>(q.size()));
  KTX_RETURN_IF_ERROR(pool.parallel_for_nodes(counts, [&](int qn, int64_t t) {
    const Batch& b = queues[static_cast<size_t>(qn)][static_cast<size_t>(t)];
    std::vector<void*> pages(b.pages);
    std::vector<int> nodes(b.pages, b.node), status(b.pages, -1);
    uint8_t sink = 0;
    for (uint64_t i = 0; i < b.pages; ++i) {
      pages[i] = reinterpret_cast<void*>(b.begin + i * page);
      sink ^= *static_cast<const volatile uint8_t*>(pages[i]);  // fault it in
    }
    (void)sink;
    uint64_t ok = 0;
    int err = 0;
    if (syscall(SYS_move_pages, 0, static_cast<unsigned long>(b.pages), pages.data(),
                nodes.data(), status.data(), kMpolMfMove) < 0) {
      err = errno;
    } else {
      for (uint64_t i = 0; i < b.pages; ++i) {
        if (status[i] == b.node) {
          ++ok;
        } else if (err == 0) {
          err = status[i] < 0 ? -status[i] : EAGAIN;
        }
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    result.placed += ok;
    result.failed += b.pages - ok;
    node_placed[b.node] += ok;
    if (err != 0) first_errno.emplace(b.node, err);
  }));
  for (const auto& [node, err] : first_errno) {
    if (err == ENOSYS || err == EPERM)
      return Error("numa placement: move_pages is not available here ({})", std::strerror(err));
    if (node_placed[node] == 0)
      return Error("numa placement: no page could be moved to node {} ({})", node,
                   std::strerror(err));
  }
  return result;
}

}  // namespace ktx::cpu
